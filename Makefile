# pmargin: everything from nothing but python3 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Core-only environment (no optional extras: numba, dask, matplotlib), for `make test-core`.
CORE_VENV  ?= .venv-core
CORE_STAMP := $(CORE_VENV)/.installed

.PHONY: run test test-core bench bench-backtest lint env clean conformance lock browser

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(CORE_STAMP): pyproject.toml requirements/core.lock
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CORE_VENV)/bin/python -m pip install --quiet -r requirements/core.lock
	$(CORE_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(CORE_STAMP)

env: $(STAMP)

run: $(STAMP)
	$(BIN)/pmargin serve --demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

# The suite on the core install alone: tests needing an optional extra skip.
test-core: $(CORE_STAMP)
	$(CORE_VENV)/bin/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# Only the full backtest (issue 12 target), written into docs/benchmarks.md.
bench-backtest: $(STAMP)
	$(BIN)/python benchmarks/run.py backtest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

conformance: $(STAMP)
	$(BIN)/pmargin conformance run ../shared/conformance/vectors ../shared/conformance/derive-pm2

# Regenerate both lockfiles after changing dependencies in pyproject.toml (uv in .venv).
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --all-extras -p 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra test -p 3.11 -c requirements.lock \
		-o requirements/core.lock

# Debian's Chromium and ChromeDriver for the browser tests (they skip, saying why, without them).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver present"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
		echo "run as root (or with sudo): apt-get install -y chromium chromium-driver"; \
	fi

clean:
	rm -rf $(VENV) $(CORE_VENV) .pytest_cache .mypy_cache .ruff_cache
