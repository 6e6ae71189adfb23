"""A real OpenAI-compatible HTTP server for loopback tests and benchmarks (stdlib asyncio, HTTP/1.1 keep-alive).

Run it as its own process; it prints `PORT <n>` on stdout and writes the port to `--port-file` when ready:

    python -m tests.servers.openai_server --port 0 --port-file /tmp/port --latency 0.2 --log-file /tmp/log.jsonl

Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
`GET /stats` (request log + counters as JSON), `POST /stats/reset`. Streaming is not supported (`stream` ignored).

Scripted replies (deterministic for a given prompt) make a SANDBOX world work:
- a prompt whose last message asks for a rating ("rate", "score", or "rating" without "revise") gets one in the range named by the prompt
  ("from 1 ... to 7", "1-10"; default 1..7): JSON when the prompt mentions JSON (keys copied from the JSON template in
  the prompt: rating/score/alignment/engagement → int, winner/better/preferred/choice → "A", anything else → text),
  else `Rating: N ### Reason: ...` (`--rating-style json|form|auto`). Answers being rated that start with "Revised"
  score higher than drafts, so revisions improve.
- a revise prompt ("revise" in the last message) gets "Revised answer: ..."; any other prompt gets "Answer: ..." text.
- `usage` token counts are whitespace-token counts of prompt and reply; `max_tokens` truncates the reply.
- `/v1/embeddings`: deterministic hashed bag-of-words vectors (`--embed-dim`, default 384), L2-normalised: the same
  text always gives the same vector and texts sharing words are similar.

Options (all faults are drawn from one RNG seeded by `--seed`, in request arrival order):
- `--latency S` fixed delay per generation/embedding request (e.g. 0.2 or 1.0); `--latency-jitter S` uniform extra.
- `--p429 P` and `--retry-after S`: answer 429 with a `Retry-After: S` header; `--p500 P`: answer 500;
  `--pslow P` and `--slow-s S`: respond only after S seconds (set it above the client timeout);
  `--pgarbage P`: a rating prompt gets unreadable text ("garbage"), or an out-of-range rating half of the time.
- `--fail-first N`: the first N generation requests get 500 (deterministic retry tests).
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
_RANGE = re.compile(r"\b(?:from\s+)?(\d{1,2})\b[^0-9.\n]{0,40}?(?:to|-|–|\.\.)\s*(\d{1,2})\b", re.IGNORECASE)
_TURN = "\n\x1e"  # joins chat messages; the last part is the last message
_JSON_KEY = re.compile(r'"(\w+)"\s*:')
_INT_KEYS = {"rating", "score", "alignment", "engagement", "value", "helpfulness", "harmlessness"}
_CHOICE_KEYS = {"winner", "better", "preferred", "choice"}
_ANSWER_QUOTE = re.compile(r'(?:answered|Answer):\s*"(?P<answer>[^"]*)', re.IGNORECASE)
_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                500: "Internal Server Error"}  # fmt: skip


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
        if asks_rating(prompt):
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
        text = self.script.reply(prompt, fault == "garbage", int(max_tokens) if max_tokens else None)
        usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = request.get("model") or self.options.models[0]
        if path == "/v1/chat/completions":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
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
    parser.add_argument("--rating-style", choices=["auto", "json", "form"], default="auto")
    parser.add_argument("--embed-dim", type=int, default=384)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--log-file", default=None)
    args = parser.parse_args(argv)
    options = Options(
        latency=args.latency, latency_jitter=args.latency_jitter, seed=args.seed, p429=args.p429,
        retry_after=args.retry_after, p500=args.p500, pslow=args.pslow, slow_s=args.slow_s, pgarbage=args.pgarbage,
        fail_first=args.fail_first, rating_style=args.rating_style, embed_dim=args.embed_dim, api_key=args.api_key,
        models=args.model or ["stub-model"], log_file=args.log_file,
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
