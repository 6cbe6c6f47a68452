# Two entry points for a fresh clone: `make run` (launch the app) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test venv bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/densestudio

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/densestudio bench import
	$(BIN)/densestudio bench train

clean:
	rm -rf $(VENV) build *.egg-info
