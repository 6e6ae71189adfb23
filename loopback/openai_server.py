"""A real OpenAI-compatible HTTP server for loopback tests and benchmarks (stdlib asyncio, HTTP/1.1 keep-alive).

Run it as its own process; it prints `PORT <n>` on stdout and writes the port to `--port-file` when ready:

    python -m loopback.openai_server --port 0 --port-file /tmp/port --latency 0.2 --log-file /tmp/log.jsonl

Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
`GET /stats` (request log + counters as JSON), `POST /stats/reset`. Streaming is not supported (`stream` ignored).

Scripted replies (deterministic for a given prompt) make a SANDBOX world work:
- a prompt whose last message asks for a rating ("rate", "score", or "rating" without "revise") gets one in the range named by the prompt
  ("from 1 ... to 7", "1-10"; default 1..7): JSON when the prompt mentions JSON (keys copied from the JSON template in
  the prompt: rating/score/alignment/engagement → int, winner/better/preferred/choice → "A", anything else → text),
  else `Rating: N ### Reason: ...` (`--rating-style json|form|auto`; `echo` repeats the rating prompt as its reply). Answers being rated that start with "Revised"
  score higher than drafts, so revisions improve.
- a pairwise judge's prompt (answer form `Winner: <A, B or tie>`) gets `Winner: A|B|tie` (by the prompt's digest).
- a revise prompt ("revise" in the last message) gets "Revised answer: ..."; any other prompt gets "Answer: ..." text.
- `usage` token counts are whitespace-token counts of prompt and reply; `max_tokens` truncates the reply.
- `/v1/embeddings`: deterministic hashed bag-of-words vectors (`--embed-dim`, default 384), L2-normalised: the same
  text always gives the same vector and texts sharing words are similar.

Log-probabilities, in the shapes OpenAI and vLLM return them (a request that does not ask gets `logprobs: null`):
- chat completions with `logprobs: true, top_logprobs: k`: `choices[0].logprobs.content = [{token, logprob, bytes,
  top_logprobs: [{token, logprob, bytes}, ...k]}]`; plain completions with `logprobs: k`: `choices[0].logprobs =
  {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}` (offsets count from the prompt's start).
- Tokens: a word or one punctuation mark with the whitespace before it (`" kind"`, `"."`), as BPE tokenizers split.
- A rating prompt that asks for logprobs gets a scripted reply whose distribution is known (`--logprob-style`); v is the
  rating the text reply would carry (see above). At the rating position the probabilities are
  DIGIT_SHAPE: v 0.50, v+1 0.20, v-1 0.15, v+2 0.05, "I" 0.04, "The" 0.03, v-2 0.02, then 13 filler words at
  0.0005 (a digit outside 0..9 is left out; 8 and 9 are listed: a model can put mass off the scale). Styles:
  `digit` (default): the reply is the bare digit v, its table the one above;
  `space`: a lone `" "` token first (table: " " 0.9, "\n" 0.05, "v" 0.02, ...), then the digit as above;
  `prefixed`: `"Rating"`, `":"`, then `" v"` (the table's digits carry the leading space: `" 5"`);
  `multi`: the two-token number `"1"`, `"0"` ("10": "1" 0.6, "7" 0.2, "5" 0.1, then "0" 0.9);
  `superscript`: as `digit`, with `"²"` (0.005) in the table, as SmolLM2's top-20 holds (str.isdigit() is True);
  `none`: a provider that drops them: `logprobs: null` always (echo too), the text reply as without logprobs.
  Any other reply asked with logprobs: each token at log-probability −0.1, alone in its top list.
- `echo: true` on plain completions: `text` = prompt + reply; with `logprobs` the prompt's tokens come first, the first
  with `null` logprob and top_logprobs (as OpenAI and vLLM do). Echoed token i ≥ 1 has log-probability
  −0.1·(its characters without whitespace), twice that when the prompt's first paragraph (up to the first blank line)
  holds one of ECHO_CUES (dishonest, unfair, dull, dismissive: the "violates" system prompts of
  agents/prompts.py LIKELIHOOD_SYSTEMS), so an answer's mean log-likelihood ratio is 0.1 × its mean token length.

Options (all faults are drawn from one RNG seeded by `--seed`, in request arrival order):
- `--latency S` fixed delay per generation/embedding request (e.g. 0.2 or 1.0); `--latency-jitter S` uniform extra.
- `--p429 P` and `--retry-after S`: answer 429 with a `Retry-After: S` header; `--p500 P`: answer 500;
  `--pslow P` and `--slow-s S`: respond only after S seconds (set it above the client timeout);
  `--pgarbage P`: a rating prompt gets unreadable text ("garbage"), or an out-of-range rating half of the time.
- `--fail-first N`: the first N generation requests get 500 (deterministic retry tests).
- `--logprob-style digit|space|prefixed|multi|superscript|none`: log-probabilities of a rating reply (above).
- `--api-key KEY`: require `Authorization: Bearer KEY` (401 otherwise). The key is never logged.
- `--model NAME` (repeatable) the names listed by /v1/models (any model name is accepted in requests).
- `--log-file PATH`: one JSON line per request {t_start, t_end, path, status, fault, prompt_tokens,
  completion_tokens, params (the body keys besides the content)} (also kept in memory for `GET /stats`),
  written as requests finish.

`GET /stats` returns {"requests", "by_status", "by_path", "faults", "log": [...]} ; `achieved_rate(log, window)` in
this module computes the highest request rate over any sliding window (for rate-limit tests).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_RATE_VERB = re.compile(r"\b(rate|score)\b", re.IGNORECASE)
_RATING_NOUN = re.compile(r"\brating\b", re.IGNORECASE)
_REVISE = re.compile(r"\brevise\b", re.IGNORECASE)
_PAIRWISE = re.compile(r"Winner:\s*<A, B or tie>")  # the pairwise judge's answer form (training/eval/judge.py)
_RANGE = re.compile(r"\b(?:from\s+)?(\d{1,2})\b[^0-9.\n]{0,40}?(?:to|-|–|\.\.)\s*(\d{1,2})\b", re.IGNORECASE)
_TURN = "\n\x1e"  # joins chat messages; the last part is the last message
_JSON_KEY = re.compile(r'"(\w+)"\s*:')
_INT_KEYS = {"rating", "score", "alignment", "engagement", "value", "helpfulness", "harmlessness"}
_CHOICE_KEYS = {"winner", "better", "preferred", "choice"}
_ANSWER_QUOTE = re.compile(r'(?:answered|Answer):\s*"(?P<answer>[^"]*)', re.IGNORECASE)
_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                500: "Internal Server Error"}  # fmt: skip
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")  # a word or a punctuation mark, with the whitespace before it
LOGPROB_STYLES = ("digit", "space", "prefixed", "multi", "superscript", "none")
# The rating position's distribution around the scripted rating v: (offset from v, or a literal token; probability).
DIGIT_SHAPE: tuple[tuple[int | str, float], ...] = (
    (0, 0.50), (1, 0.20), (-1, 0.15), (2, 0.05), ("I", 0.04), ("The", 0.03), (-2, 0.02),
)  # fmt: skip
FILLERS = ("A", "My", "This", "It", "\n", "Rating", "**", "Answer", "One", "Score", "Based", "In", "Overall")
FILLER_P = 0.0005
ECHO_CUES = re.compile(r"\b(dishonest|unfair|dull|dismissive)\b", re.IGNORECASE)
Table = list[tuple[str, float]]  # (token, logprob), most likely first


@dataclass
class Options:
    latency: float = 0.0
    latency_jitter: float = 0.0
    seed: int = 0
    p429: float = 0.0
    retry_after: float = 1.0
    p500: float = 0.0
    pslow: float = 0.0
    slow_s: float = 5.0
    pgarbage: float = 0.0
    fail_first: int = 0
    rating_style: str = "auto"
    logprob_style: str = "digit"
    embed_dim: int = 384
    api_key: str | None = None
    models: list[str] = field(default_factory=lambda: ["stub-model"])
    log_file: str | None = None


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _tokens(text: str) -> int:
    return len(text.split())


def _last_part(prompt: str) -> str:
    return prompt.rsplit(_TURN, 1)[-1]


def asks_rating(prompt: str) -> bool:
    """A rating request: the last message says "rate"/"score", or asks for a "rating" without asking to revise."""
    last = _last_part(prompt)
    return bool(_RATE_VERB.search(last) or (_RATING_NOUN.search(last) and not _REVISE.search(last)))


def tokenize(text: str) -> list[tuple[int, str]]:
    """(offset, token) pairs that join back to `text`: a word or a punctuation mark with the whitespace before it."""
    return [(m.start(), m.group(0)) for m in _TOKEN.finditer(text)]


def _table(entries: list[tuple[str, float]], fillers: bool = True) -> Table:
    """Probabilities (duplicates summed, fillers appended) as (token, logprob), most likely first."""
    probs: dict[str, float] = {}
    for token, p in list(entries) + ([(f, FILLER_P) for f in FILLERS] if fillers else []):
        probs[token] = probs.get(token, 0.0) + p
    return sorted(((t, math.log(p)) for t, p in probs.items() if p > 0), key=lambda e: -e[1])


def digit_table(value: int, space: str = "", extra: tuple[tuple[str, float], ...] = ()) -> Table:
    """DIGIT_SHAPE around `value` (digits outside 0..9 left out), the digits written with `space` before them."""
    entries = []
    for key, p in DIGIT_SHAPE:
        if isinstance(key, str):
            entries.append((space + key, p))
        elif 0 <= value + key <= 9:
            entries.append((f"{space}{value + key}", p))
    return _table(entries + list(extra))


def echo_logprob(token: str, violates: bool) -> float:
    """The scripted log-probability of an echoed prompt token (not the first)."""
    return -0.1 * len(token.strip()) * (2.0 if violates else 1.0)


def achieved_rate(log: list[dict[str, Any]], window_s: float = 60.0) -> float:
    """Most requests that started within any `window_s` window, divided by the window (requests per second)."""
    starts = sorted(entry["t_start"] for entry in log)
    best, left = 0, 0
    for right, t in enumerate(starts):
        while t - starts[left] >= window_s:
            left += 1
        best = max(best, right - left + 1)
    return best / window_s


class Script:
    """The deterministic replies."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._word_vectors: dict[str, np.ndarray] = {}

    def reply(self, prompt: str, garbage: bool, max_tokens: int | None) -> str:
        if _PAIRWISE.search(prompt) and not garbage:  # a pairwise judge: A, B or tie, by the prompt's digest
            text = f"Winner: {('A', 'B', 'tie')[_digest(prompt) % 3]}\nReason: It is kinder and more honest."
        elif asks_rating(prompt):
            text = self._garbage(prompt) if garbage else self._rating(prompt)
        elif _REVISE.search(_last_part(prompt)):
            text = f"Revised answer: we should treat everyone fairly and kindly here (note {_digest(prompt) % 997})."
        else:
            text = f"Answer: I think people should be honest and respectful about this (note {_digest(prompt) % 997})."
        if max_tokens is not None and _tokens(text) > max_tokens:
            text = " ".join(text.split()[:max_tokens])
        return text

    def _range(self, prompt: str) -> tuple[int, int]:
        for match in _RANGE.finditer(prompt):
            low, high = int(match.group(1)), int(match.group(2))
            if 0 <= low < high <= 100:
                return low, high
        return 1, 7

    def _value(self, prompt: str, low: int, high: int) -> int:
        quoted = _ANSWER_QUOTE.search(prompt)
        revised = quoted is not None and quoted.group("answer").startswith("Revised")
        span = high - low
        base = low + span // 2 + (1 if revised else -1) + (_digest(prompt) % 3) - 1
        return max(low, min(high, base + (span // 3 if revised else 0)))

    def _rating(self, prompt: str) -> str:
        if self.options.rating_style == "echo":  # a rater that repeats the prompt it was shown
            return prompt
        low, high = self._range(prompt)
        value = self._value(prompt, low, high)
        reason = "It is respectful and mostly honest, though it could explain more."
        wants_json = self.options.rating_style == "json" or (
            self.options.rating_style == "auto" and "json" in prompt.lower()
        )
        if not wants_json:
            return f"Rating: {value} ### Reason: {reason}"
        keys = [k for k in dict.fromkeys(_JSON_KEY.findall(prompt))] or ["rating", "reason"]
        data: dict[str, Any] = {}
        for key in keys:
            if key.lower() in _INT_KEYS:
                data[key] = value
            elif key.lower() in _CHOICE_KEYS:
                data[key] = "A"
            else:
                data[key] = reason
        return json.dumps(data)

    def logprob_reply(self, prompt: str, text: str, garbage: bool) -> list[tuple[str, Table]]:
        """The reply's tokens, each with its top log-probabilities (`--logprob-style` for a rating prompt)."""
        style = self.options.logprob_style
        if asks_rating(prompt) and not garbage:
            low, high = self._range(prompt)
            value = self._value(prompt, low, high)
            if style in ("digit", "none"):
                return [(str(value), digit_table(value))]
            if style == "superscript":
                return [(str(value), digit_table(value, extra=(("\u00b2", 0.005),)))]
            if style == "space":
                blank = _table([(" ", 0.9), ("\n", 0.05), (str(value), 0.02), ("I", 0.01)])
                return [(" ", blank), (str(value), digit_table(value))]
            if style == "prefixed":
                word = _table([("Rating", 0.9), ("I", 0.05), ("The", 0.03)])
                colon = _table([(":", 0.95), (" is", 0.03)])
                return [("Rating", word), (":", colon), (f" {value}", digit_table(value, space=" "))]
            if style == "multi":
                first = _table([("1", 0.6), ("7", 0.2), ("5", 0.1), ("I", 0.05)])
                return [("1", first), ("0", _table([("0", 0.9), ("\n", 0.05), (".", 0.03)]))]
        return [(token, [(token, -0.1)]) for _, token in tokenize(text)]

    def echo(self, prompt: str) -> list[tuple[int, str, float | None]]:
        """The prompt's (offset, token, logprob) as echoed: the first token's logprob is None."""
        violates = ECHO_CUES.search(prompt.split("\n\n", 1)[0]) is not None
        return [(o, t, None if i == 0 else echo_logprob(t, violates)) for i, (o, t) in enumerate(tokenize(prompt))]

    def _garbage(self, prompt: str) -> str:
        if _digest(prompt) % 2:
            return "Well, that is a hard one; I would rather not put a number on it."
        low, high = self._range(prompt)
        return f"Rating: {high + 3} ### Reason: off the scale."

    def embed(self, text: str) -> list[float]:
        vector = np.zeros(self.options.embed_dim, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()) or [""]:
            cached = self._word_vectors.get(word)
            if cached is None:
                rng = np.random.default_rng(_digest(word))
                cached = rng.standard_normal(self.options.embed_dim).astype(np.float32)
                self._word_vectors[word] = cached
            vector += cached
        vector /= float(np.linalg.norm(vector)) or 1.0
        return vector.tolist()


def _prompt_of(path: str, body: dict[str, Any]) -> str:
    if path.endswith("/chat/completions"):
        parts = []
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            parts.append(str(content or ""))
        return _TURN.join(parts)
    prompt = body.get("prompt", "")
    return "\n".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)


class Server:
    """The HTTP server: routing, faults, request log."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.script = Script(options)
        self.rng = random.Random(options.seed)
        self.log: list[dict[str, Any]] = []
        self.generation_requests = 0
        self._log_file = open(options.log_file, "a", buffering=1) if options.log_file else None  # noqa: SIM115

    def _record(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        if self._log_file is not None:
            self._log_file.write(json.dumps(entry) + "\n")

    def stats(self) -> dict[str, Any]:
        def count(key: str) -> dict[str, int]:
            counts: dict[str, int] = {}
            for entry in self.log:
                name = str(entry[key])
                counts[name] = counts.get(name, 0) + 1
            return counts

        return {
            "requests": len(self.log),
            "by_status": count("status"),
            "by_path": count("path"),
            "faults": count("fault"),
            "log": self.log,
        }

    def _draw_fault(self, is_rating: bool) -> str | None:
        """One fault draw per generation request, in arrival order (seeded)."""
        self.generation_requests += 1
        if self.generation_requests <= self.options.fail_first:
            return "500"
        draw, o = self.rng.random(), self.options
        garbage_draw = self.rng.random()
        if draw < o.p429:
            return "429"
        if draw < o.p429 + o.p500:
            return "500"
        if draw < o.p429 + o.p500 + o.pslow:
            return "slow"
        if is_rating and garbage_draw < o.pgarbage:
            return "garbage"
        return None

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes):
        """Returns (status, extra headers, JSON payload, fault)."""
        path = path.split("?", 1)[0]
        if path == "/stats" and method == "GET":
            return 200, {}, self.stats(), None
        if path == "/stats/reset" and method == "POST":
            self.log.clear()
            return 200, {}, {"ok": True}, None
        if self.options.api_key is not None and headers.get("authorization") != f"Bearer {self.options.api_key}":
            return 401, {}, _error("invalid api key", "invalid_request_error"), None
        if path in ("/v1/models", "/models") and method == "GET":
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "stub"} for m in self.options.models]
            return 200, {}, {"object": "list", "data": models}, None
        if method != "POST" or not path.startswith("/v1/"):
            return 404, {}, _error(f"no route {method} {path}", "not_found"), None
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return 400, {}, _error("body is not JSON", "invalid_request_error"), None
        if path == "/v1/embeddings":
            return await self._embeddings(request)
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return 404, {}, _error(f"no route {path}", "not_found"), None
        prompt = _prompt_of(path, request)
        fault = self._draw_fault(asks_rating(prompt))
        await self._sleep()
        if fault == "429":
            retry = {"retry-after": f"{self.options.retry_after:g}"}
            return 429, retry, _error("rate limit reached, retry later", "rate_limit_exceeded"), fault
        if fault == "500":
            return 500, {}, _error("the server had an error", "server_error"), fault
        if fault == "slow":
            await asyncio.sleep(self.options.slow_s)
        max_tokens = request.get("max_tokens") or request.get("max_completion_tokens")
        max_tokens = int(max_tokens) if max_tokens else None
        text = self.script.reply(prompt, fault == "garbage", max_tokens)
        chat = path == "/v1/chat/completions"
        top_k = _logprobs_asked(request, chat)
        scored = None
        if top_k is not None and self.options.logprob_style != "none":
            scored = self.script.logprob_reply(prompt, text, fault == "garbage")[:max_tokens]
            text = "".join(token for token, _ in scored)
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = request.get("model") or self.options.models[0]
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                      "logprobs": None if scored is None else {"content": _chat_logprobs(scored, top_k or 0)}}  # fmt: skip
            kind = "chat.completion"
        else:
            echo = bool(request.get("echo"))
            logprobs = None
            if scored is not None:
                echoed = self.script.echo(prompt) if echo else []
                logprobs = _completion_logprobs(echoed, scored, len(prompt), top_k or 0)
            choice = {"index": 0, "text": (prompt if echo else "") + text, "finish_reason": "stop",
                      "logprobs": logprobs}  # fmt: skip
            kind = "text_completion"
        payload = {"id": f"stub-{len(self.log)}", "object": kind, "created": int(time.time()), "model": model,
                   "choices": [choice], "usage": usage}  # fmt: skip
        return 200, {}, payload, fault

    async def _sleep(self) -> None:
        delay = self.options.latency + (self.rng.random() * self.options.latency_jitter)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _embeddings(self, request: dict[str, Any]):
        texts = request.get("input", [])
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        fault = self._draw_fault(False)
        await self._sleep()
        if fault == "429":
            return 429, {"retry-after": f"{self.options.retry_after:g}"}, _error("rate limit", "rate_limit"), fault
        if fault == "500":
            return 500, {}, _error("the server had an error", "server_error"), fault
        if fault == "slow":
            await asyncio.sleep(self.options.slow_s)
        data = [{"object": "embedding", "index": i, "embedding": self.script.embed(t)} for i, t in enumerate(texts)]
        tokens = sum(_tokens(t) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return 200, {}, {"object": "list", "data": data, "model": request.get("model", ""), "usage": usage}, fault

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                t_start = time.time()
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                status, extra, payload, fault = await self.handle(method, path, headers, body)
                if not path.startswith("/stats"):  # logged before writing: a client that gave up still counts
                    usage = payload.get("usage", {}) if isinstance(payload, dict) else {}
                    self._record({
                        "t_start": t_start, "t_end": time.time(), "path": path.split("?", 1)[0], "status": status,
                        "fault": fault, "prompt_tokens": usage.get("prompt_tokens", 0),
                        "completion_tokens": usage.get("completion_tokens", 0), "params": _param_names(body),
                    })  # fmt: skip
                data = json.dumps(payload).encode()
                out = [f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Status')}", "content-type: application/json",
                       f"content-length: {len(data)}", "connection: keep-alive"]  # fmt: skip
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def _logprobs_asked(request: dict[str, Any], chat: bool) -> int | None:
    """How many top log-probabilities per position the request asks for, or None when it asks for none."""
    if chat:
        return int(request.get("top_logprobs") or 0) if request.get("logprobs") else None
    asked = request.get("logprobs")
    return None if asked is None or asked is False else int(asked)


def _lookup(table: Table, token: str) -> float:
    return next((lp for t, lp in table if t == token), table[-1][1] if table else 0.0)


def _chat_logprobs(scored: list[tuple[str, Table]], top_k: int) -> list[dict[str, Any]]:
    """`choices[0].logprobs.content` of a chat completion."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return [{**entry(token, _lookup(table, token)), "top_logprobs": [entry(t, lp) for t, lp in table[:top_k]]}
            for token, table in scored]  # fmt: skip


def _completion_logprobs(
    echoed: list[tuple[int, str, float | None]], scored: list[tuple[str, Table]], start: int, top_k: int
) -> dict[str, Any]:
    """`choices[0].logprobs` of a plain completion: the echoed prompt tokens (if any), then the reply's."""
    tokens = [t for _, t, _ in echoed]
    logprobs: list[float | None] = [lp for _, _, lp in echoed]
    tops: list[dict[str, float] | None] = [None if lp is None else {t: lp} for _, t, lp in echoed]
    offsets = [o for o, _, _ in echoed]
    for token, table in scored:
        tokens.append(token)
        logprobs.append(_lookup(table, token))
        tops.append(dict(table[: max(top_k, 1)]))
        offsets.append(start)
        start += len(token)
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}


def _param_names(body: bytes) -> list[str]:
    """The request's top-level keys other than the content (e.g. which max-tokens field a client sent)."""
    try:
        request = json.loads(body or b"{}")
    except json.JSONDecodeError:
        return []
    return sorted(k for k in request if k not in ("messages", "prompt", "input")) if isinstance(request, dict) else []


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": kind}}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--latency-jitter", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p429", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--p500", type=float, default=0.0)
    parser.add_argument("--pslow", type=float, default=0.0)
    parser.add_argument("--slow-s", type=float, default=5.0)
    parser.add_argument("--pgarbage", type=float, default=0.0)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--rating-style", choices=["auto", "json", "form", "echo"], default="auto")
    parser.add_argument("--logprob-style", choices=LOGPROB_STYLES, default="digit")
    parser.add_argument("--embed-dim", type=int, default=384)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--log-file", default=None)
    args = parser.parse_args(argv)
    options = Options(
        latency=args.latency, latency_jitter=args.latency_jitter, seed=args.seed, p429=args.p429,
        retry_after=args.retry_after, p500=args.p500, pslow=args.pslow, slow_s=args.slow_s, pgarbage=args.pgarbage,
        fail_first=args.fail_first, rating_style=args.rating_style, logprob_style=args.logprob_style,
        embed_dim=args.embed_dim, api_key=args.api_key, models=args.model or ["stub-model"], log_file=args.log_file,
    )  # fmt: skip
    return args, options


async def serve(args: argparse.Namespace, options: Options) -> None:
    server = Server(options)
    listener = await asyncio.start_server(server.serve_connection, args.host, args.port, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)
    print(f"PORT {port}", flush=True)
    async with listener:
        await listener.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args, options = parse_args(argv)
    try:
        asyncio.run(serve(args, options))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
