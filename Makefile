# The few commands people type. On a fresh clone, `make quickstart` and `make test` do all set-up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup quickstart test test-fast lint bench clean

setup: $(VENV)/.installed

# Debian packages: bubblewrap is the sandbox (without it grading falls back to a weaker mode, and says
# so); chromium, its driver and CJK fonts are for the browser test of the instructor pages.
APT_PACKAGES := bubblewrap chromium chromium-driver fonts-noto-cjk

$(VENV)/.installed: pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "WARNING: missing Debian packages:$$missing (sudo apt-get install$$missing)"; \
	  fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a plain "torch" would pull the CUDA build (gigabytes).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

quickstart: setup
	$(BIN)/hwgrade serve

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache
