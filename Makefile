# Two entry points for a fresh machine: `make demo` (meta-train + adapt on the embedded demo) and
# `make test` (the test suite). Both create .venv and install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: demo test install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=strict

demo: install
	$(BIN)/piaa meta-train
	$(BIN)/piaa adapt --user 42 --shots 10

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info runs
