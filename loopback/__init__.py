"""Real HTTP servers on loopback for tests and benchmarks: a scripted, fault-injecting OpenAI-compatible stub
(`loopback.openai_server`), process helpers to start and stop it and llama.cpp's server (`loopback.servers`), and the
pytest fixtures `openai_stub` and `llama_server` (`loopback.fixtures`, a pytest plugin)."""
