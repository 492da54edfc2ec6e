# Two commands do everything on a fresh machine:
#   make demo   install into .venv, then run the all-in-one demo on the embedded toy backbone
#   make test   install into .venv (with dev tools), then run lint and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/mnemo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/mnemo

install: $(BIN)/mnemo

demo: install
	$(BIN)/mnemo demo

serve: install
	$(BIN)/mnemo serve

test: install
	$(BIN)/ruff check .
	OMP_WAIT_POLICY=PASSIVE $(BIN)/pytest

.PHONY: install demo serve test
