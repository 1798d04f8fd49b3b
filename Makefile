# Two commands for a newcomer (see README):
#   make demo   set up, simulate one revolution into ./demo-archive and analyse it
#   make test   set up and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup demo test bench validation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/isdc-run demo --archive demo-archive

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

validation: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,docs]'
	cd benchmarks && ../$(BIN)/python validation.py

clean:
	rm -rf $(VENV) demo-archive .pytest_cache
