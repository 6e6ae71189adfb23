"""Real HTTP servers for loopback tests: a scripted/fault-injecting OpenAI-compatible stub and llama.cpp fixtures."""
