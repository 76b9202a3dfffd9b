# make demo: set up, find a LeNet-300-100 ticket on Fashion-MNIST, inspect and evaluate it.
# make test: set up, lint, run the test suite but its long end-to-end runs (make test-slow;
# CI runs both).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RUN ?= runs/lenet300

.PHONY: setup data demo test test-slow lint clean gpu-check

setup: $(BIN)/.installed data

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,dev]'
	touch $@

data:
	@test -d $(DATA) || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist)

demo: setup
	rm -rf $(RUN)
	$(BIN)/sltc discover examples/lenet300-fashion.yaml --out $(RUN)
	$(BIN)/sltc inspect $(RUN)/ticket.slt
	$(BIN)/sltc plot $(RUN)
	$(BIN)/sltc eval $(RUN)/ticket.slt

lint: setup
	$(BIN)/ruff check .

# one pytest worker per core (-n auto; an idle worker takes over another's queue):
# most tests are one CPU-bound process each.
# test: every test but the long end-to-end runs marked slow; test-slow: those (CI runs both)
test: setup lint
	$(BIN)/pytest -q -n auto --dist worksteal -m "not slow" --durations=10

test-slow: setup
	$(BIN)/pytest -q -n auto --dist worksteal -m slow --durations=10

clean:
	rm -rf $(VENV) runs build *.egg-info

gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py
