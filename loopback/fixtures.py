"""Pytest fixtures for real servers on loopback (a plugin: `pytest_plugins = ["loopback.fixtures"]` in conftest.py).

    def test_x(openai_stub):
        server = openai_stub(latency=0.2, p429=0.1, retry_after=0.5, log=True)  # options: loopback.servers

    def test_y(llama_server):  # llama.cpp + SmolLM2, one per session
        llama_server.base_url

Each server runs in its own process and is stopped (by pid) at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loopback.servers import RunningServer, start_llama_server, start_openai_stub


@pytest.fixture
def openai_stub(tmp_path_factory) -> Iterator[Callable[..., RunningServer]]:
    """A factory: `openai_stub(**options) -> RunningServer`; every server it started is stopped at teardown."""
    started: list[RunningServer] = []
    folder = tmp_path_factory.mktemp("openai-stub")

    def start(**options: Any) -> RunningServer:
        server = start_openai_stub(folder, **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory) -> Iterator[RunningServer]:
    """llama.cpp's OpenAI-compatible server with the embedded SmolLM2 GGUF on loopback (model name `smollm2`)."""
    server = start_llama_server(tmp_path_factory.mktemp("llama-server"))
    try:
        yield server
    finally:
        server.stop()
