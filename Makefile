# Two commands do everything on a fresh machine:
#   make demo   install into .venv, then run the all-in-one demo on the embedded toy backbone
#   make test   install into .venv (with dev tools), then run lint and the whole test suite
# Both install every role (api, worker) and the dev tools; a production host installs its role's
# extra only: pip install "mnemo[api]" or "mnemo[worker]" (docs/deployment.md).
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/mnemo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[api,worker,dev]"
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
