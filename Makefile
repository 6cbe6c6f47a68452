# Two entry points for a fresh clone: `make run` (launch the app) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

NODE_EXAMPLE := packaging/examples/node

.PHONY: run test lint venv node-example bench screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

# The Node.js runner of exported models (tests/deploy/test_node_runner.py). `npm ci` installs
# exactly package-lock.json; --ignore-scripts and ONNXRUNTIME_NODE_INSTALL=skip keep
# onnxruntime-node from downloading CUDA binaries (its CPU binaries are in the package).
# Without npm, or offline, the test is skipped and says why; --prefer-offline uses npm's cache
# and one short try (no retries) keeps an offline CI box from waiting minutes on the registry.
$(NODE_EXAMPLE)/node_modules/.installed: $(NODE_EXAMPLE)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  (cd $(NODE_EXAMPLE) && ONNXRUNTIME_NODE_INSTALL=skip npm ci --ignore-scripts --no-audit \
	    --no-fund --loglevel=error --prefer-offline --fetch-retries=0 --fetch-timeout=20000 \
	    && touch node_modules/.installed) \
	  || echo "npm ci failed: the Node.js runner test will be skipped"; \
	else echo "npm not found: the Node.js runner test will be skipped"; fi

node-example: $(NODE_EXAMPLE)/node_modules/.installed

run: venv
	$(BIN)/densestudio

# Style (ruff) and types (mypy, strict for core/, ml/ and runtime/; settings in pyproject.toml).
lint: venv
	$(BIN)/ruff check densestudio tests
	$(BIN)/mypy

# Test services (headless Chromium for the report test): installed once, then a no-op.
test: venv lint node-example
	sh tests/setup_services.sh
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python tests/benchmarks/bench_import.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python tests/benchmarks/bench_gallery.py
	$(BIN)/python tests/benchmarks/bench_train.py --seeds 0 1 2
	$(BIN)/python tests/benchmarks/bench_defaults.py
	$(BIN)/python tests/benchmarks/bench_backbone.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python tests/benchmarks/bench_train_gui.py
	$(BIN)/python tests/benchmarks/bench_label_errors.py
	$(BIN)/python tests/benchmarks/bench_inference.py --int8
	$(BIN)/python tests/benchmarks/bench_ood.py

screenshots: venv
	$(BIN)/python tests/benchmarks/make_screenshots.py
	$(BIN)/python tests/benchmarks/make_audit_screenshot.py
	$(BIN)/python tests/benchmarks/make_screenshots_explain.py
	$(BIN)/python tests/benchmarks/make_signoff_screenshots.py
	sh tests/setup_services.sh
	$(BIN)/python tests/benchmarks/make_report_screenshot.py

clean:
	rm -rf $(VENV) build *.egg-info $(NODE_EXAMPLE)/node_modules
