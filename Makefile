# Two entry points for a fresh clone: `make run` (launch the app) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint venv bench screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/densestudio

# Style (ruff) and types (mypy, strict for core/ and ml/; settings in pyproject.toml).
lint: venv
	$(BIN)/ruff check densestudio tests
	$(BIN)/mypy

# Test services (headless Chromium for the report test): installed once, then a no-op.
test: venv lint
	sh tests/setup_services.sh
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python tests/benchmarks/bench_import.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python tests/benchmarks/bench_gallery.py
	$(BIN)/python tests/benchmarks/bench_train.py --seeds 0 1 2
	QT_QPA_PLATFORM=offscreen $(BIN)/python tests/benchmarks/bench_train_gui.py
	$(BIN)/python tests/benchmarks/bench_label_errors.py

screenshots: venv
	$(BIN)/python tests/benchmarks/make_screenshots.py
	$(BIN)/python tests/benchmarks/make_audit_screenshot.py
	$(BIN)/python tests/benchmarks/make_screenshots_explain.py
	$(BIN)/python tests/benchmarks/make_signoff_screenshots.py
	sh tests/setup_services.sh
	$(BIN)/python tests/benchmarks/make_report_screenshot.py

clean:
	rm -rf $(VENV) build *.egg-info
