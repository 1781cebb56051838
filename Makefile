# The two commands a newcomer types: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

# torch first, as TORCH says (pyproject.toml allows the tested range, 2.13-2.14): 2.13 is what CI
# runs, and on this project's machines it resolves to a local CPU wheel. Elsewhere pick the build:
# make test TORCH='torch==2.14.*'; a CPU or CUDA build: README, "Dependencies and why".
TORCH ?= torch==2.13.*

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/handvox demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) demo-output
