# Parley: `make run` to use it, `make test` to check it. See README.md.
#
# Installs are idempotent: each one leaves a stamp in .venv named after a checksum of the
# requirements files, so a second `make` skips pip entirely until a requirements file
# changes (or .venv is deleted).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
ADDRESS ?= localhost
FAKE_PORT ?= 8765
PYTEST_ARGS ?=

# cksum is POSIX, so this works on Linux and macOS alike.
RUN_SUM := $(shell cat requirements.txt | cksum | tr -s ' ' '-')
DEV_SUM := $(shell cat requirements.txt requirements-dev.txt | cksum | tr -s ' ' '-')
RUN_STAMP := $(VENV)/.parley-run-$(RUN_SUM)
DEV_STAMP := $(VENV)/.parley-dev-$(DEV_SUM)

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: help run install install-dev system-packages oidc-provider test lint format bench fake-server \
	test-peers

help:
	@echo "make run          start Parley on http://$(ADDRESS):$(PORT) (creates .venv, installs)"
	@echo "make test         install dev tools and a browser, lint, run every test"
	@echo "make test-peers   the same core and a journey against a real llama.cpp server"
	@echo "make lint         ruff check and ruff format --check"
	@echo "make format       apply ruff's fixes and formatting"
	@echo "make install      create .venv and install the runtime requirements"
	@echo "make bench        print the benchmark figures (bench/*.py)"
	@echo "make fake-server  a local OpenAI-compatible test server on :$(FAKE_PORT)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.parley-run-*
	touch $@

# requirements-dev.txt includes requirements.txt, so this also satisfies `make run`.
$(DEV_STAMP): | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.parley-dev-* $(VENV)/.parley-run-*
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP) system-packages oidc-provider

# The real OpenID Connect provider (npm's oidc-provider) that the sign-in browser tests
# run on loopback; reinstalled only when its lock file changes.
OIDC_STAMP := tests/oidc/node_modules/.package-lock.json
oidc-provider: $(OIDC_STAMP)

$(OIDC_STAMP): tests/oidc/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 20.19+) is needed for the sign-in tests" >&2; exit 1; }
	npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
	touch $@

# Chromium for the browser tests and the R manuals (PDFs): apt where available,
# else Playwright's own Chromium (see the script).
system-packages: $(DEV_STAMP)
	PYTHON=$(PY) .ci/system-packages

run: $(RUN_STAMP)
	$(PY) -m streamlit run Home.py --server.port $(PORT) --server.address $(ADDRESS)

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(DEV_STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Lint first: a formatting slip fails fast instead of after the whole suite.
test: install-dev
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Every bench/*.py that runs as a script (has a __main__ block), as a module from the
# repository root so it can import lib/ and tests/.
bench: $(DEV_STAMP)
	@set -e; for f in bench/*.py; do \
		grep -q '__name__ == "__main__"' "$$f" || continue; \
		echo "== $$f"; \
		$(PY) -m bench.$$(basename "$$f" .py); \
	done

# The compatibility run against a real llama.cpp server (tests/peers/). Its virtualenv
# builds llama-cpp-python from source once, at the lowest CPU priority (about 25 minutes
# on 2 idle cores, 60 measured on 2 busy ones); the stamp names the pinned version, so
# later runs skip the build.
PEERS_VENV ?= .venv-peers
PEERS_REQ := tests/peers/requirements.txt
LLAMA_CPP_VERSION := $(shell sed -n 's/^llama-cpp-python\[server\]==//p' $(PEERS_REQ))
PEERS_SUM := $(shell cat $(PEERS_REQ) | cksum | tr -s ' ' '-')
PEERS_STAMP := $(PEERS_VENV)/.peers-llama-cpp-python-$(LLAMA_CPP_VERSION)-$(PEERS_SUM)

$(PEERS_STAMP):
	PYTHON=$(PYTHON) tests/peers/build_venv.sh $(PEERS_VENV) $@

test-peers: install-dev $(PEERS_STAMP)
	PARLEY_PEERS_VENV=$(abspath $(PEERS_VENV)) $(PY) -m pytest -m peers tests/peers $(PYTEST_ARGS)

fake-server: $(DEV_STAMP)
	@echo "Try Parley without a key: OPENAI_BASE_URL=http://127.0.0.1:$(FAKE_PORT)/v1 make run"
	$(PY) -m tests.fake_openai --port $(FAKE_PORT)
