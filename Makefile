# cleanroom — `make serve` runs the server with embedded defaults; `make test` runs the whole suite.
# Both create .venv and install what they need on a fresh machine with only Python 3.11.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU hosts get the CPU wheel of torch (a plain `torch` requirement pulls a multi-GB CUDA build).
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
EXTRAS_SERVE := minilm
EXTRAS_TEST  := dev,minilm,vault,pkcs11,aws,gpu,plot,ray
DATA_DIR ?= ./cleanroom-data
SERVE_ARGS ?=

.PHONY: serve test install install-test lint typecheck bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-serve: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS_SERVE)]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS_TEST)]"
	touch $@

install: $(VENV)/.installed-serve

install-test: $(VENV)/.installed-test
	@if [ -x scripts/install-test-services.sh ]; then bash scripts/install-test-services.sh; fi

serve: install
	$(VENV)/bin/cleanroom serve --data-dir $(DATA_DIR) $(SERVE_ARGS)

# Two workers (the CI box has 2 cores); a test file stays on one worker so its module fixtures are shared.
PYTEST_ARGS ?= -n 2 --dist loadfile
test: install-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: install-test
	$(VENV)/bin/mypy src

# The headline benchmarks (README "Measured" lists the others with their commands). They need the serve
# install (torch, minilm), not the test services; `make bench BENCH_REPEATS=1` is a quick smoke run.
BENCH_REPEATS ?= 30
bench: install
	$(PY) benchmarks/request_path.py --repeats $(BENCH_REPEATS)
	$(PY) benchmarks/aead_decrypt_into.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
