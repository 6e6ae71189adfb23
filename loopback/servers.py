"""Start and stop real servers on loopback, in their own processes: the OpenAI-compatible stub
(`loopback.openai_server`) and llama.cpp's server with the embedded SmolLM2 GGUF. No pytest here: benchmarks use it too.

    server = start_openai_stub(folder, latency=0.2, p429=0.1, retry_after=0.5, log=True)
    server.base_url        # "http://127.0.0.1:PORT/v1"
    server.stats()         # GET /stats: counters + request log
    server.log_entries()   # the request log file (when log=True), readable even after the server stopped
    server.stop()          # by pid: SIGTERM, then SIGKILL

Options are the server's command-line flags with underscores (`latency`, `p429`, `retry_after`, `p500`, `pslow`,
`slow_s`, `pgarbage`, `fail_first`, `rating_style`, `logprob_style`, `embed_dim`, `api_key`, `model`, `seed`,
`latency_jitter`). `logprob_style` scripts the log-probabilities of rating replies (chat `logprobs`/`top_logprobs`,
completions `logprobs: k` and `echo`): `digit` (default; a known distribution around the scripted rating), `space`
(a lone " " token first), `prefixed` ("Rating", ":", " 5"), `multi` ("1", "0"), `superscript` ("²" in the top list)
or `none` (a provider that drops logprobs); the distribution and the echo scores are in the server's docstring.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunningServer:
    """A server process on loopback."""

    base_url: str
    port: int
    process: subprocess.Popen
    log_file: Path | None = None
    model: str = "stub-model"
    extra: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/stats", timeout=30) as response:
            return json.load(response)

    def log_entries(self) -> list[dict[str, Any]]:
        if self.log_file is None or not self.log_file.exists():
            return []
        text = self.log_file.read_text()
        complete = text[: text.rfind("\n") + 1]  # a line the server is still writing is left for the next read
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop a server process started here, by its pid: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(grace_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_models(base_url: str, process: subprocess.Popen, timeout_s: float) -> list[str]:
    """Poll GET {base_url}/models until it answers; fail early if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=5) as response:
                return [m["id"] for m in json.load(response)["data"]]
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{base_url}/models did not answer within {timeout_s} s")


def start_openai_stub(folder: Path, **options: Any) -> RunningServer:
    """Start loopback.openai_server in its own process with `options` (flag names with underscores)."""
    log = options.pop("log", True)
    folder.mkdir(parents=True, exist_ok=True)
    port_file = folder / f"port-{time.monotonic_ns()}"
    log_file = folder / f"requests-{time.monotonic_ns()}.jsonl" if log else None
    command = [sys.executable, "-m", "loopback.openai_server", "--port", "0", "--port-file", str(port_file)]
    if log_file is not None:
        command += ["--log-file", str(log_file)]
    models = options.pop("model", None) or ["stub-model"]
    for name in [models] if isinstance(models, str) else models:
        command += ["--model", name]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"openai_server failed: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            stop_process(process)
            raise TimeoutError("openai_server did not report its port within 30 s")
        time.sleep(0.02)
    port = int(port_file.read_text())
    base_url = f"http://127.0.0.1:{port}/v1"
    model = [models] if isinstance(models, str) else models
    return RunningServer(base_url, port, process, log_file, model[0])


LLAMA_MODEL_NAME = "smollm2"


def start_llama_server(folder: Path) -> RunningServer:
    """llama.cpp's OpenAI-compatible server with the embedded SmolLM2 GGUF on loopback (model name `smollm2`).

    One thread: on 2 shared cores, llama.cpp's spinning worker threads made calls 10-20x slower with 2 threads.
    The server's output goes to `folder`/server.log (in `extra["log"]`).
    """
    from conf.paths import smollm2_gguf

    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--model_alias", LLAMA_MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "4096",
    ]  # fmt: skip
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_models(base_url, process, timeout_s=120)
    except Exception:
        stop_process(process)
        raise RuntimeError(f"llama.cpp server did not start: {log.read_text()[-2000:]}") from None
    return RunningServer(base_url, port, process, None, LLAMA_MODEL_NAME, {"log": log})
