# `make run` and `make test` work on a fresh machine with Python 3.11+ and make: each creates
# the virtual environment it needs (.venv) on first use and reuses it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready

.PHONY: run test bench clean

$(READY): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("echat needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(READY)

run: $(READY)
	$(BIN)/echat serve --host 127.0.0.1 --port 8081 --db ./echat.db

test: $(READY)
	$(BIN)/python -m pytest

# echat and the bare stack side by side (bench/__main__.py); figures in bench-results/.
bench: $(READY)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache
