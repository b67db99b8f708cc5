# lstm-inspect: every set-up step lives here.  `make demo` and `make test`
# work on a fresh clone; stamps keyed on pyproject.toml make reruns fast.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
STAMP_INSTALL := $(VENV)/.stamp-install
STAMP_TEST := $(VENV)/.stamp-test
# Keep TensorFlow quiet in tests, benchmarks and sample-model builds.
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: install demo test bench fuzz sample-models lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_INSTALL): pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml $(STAMP_INSTALL)
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(STAMP_INSTALL)

demo: install
	@echo '$$ lstm-inspect layers sample_models/stacked_lstm.keras'
	@$(BIN)/lstm-inspect layers sample_models/stacked_lstm.keras --format table
	@echo
	@echo '$$ lstm-inspect weights sample_models/single_lstm.h5'
	@$(BIN)/lstm-inspect weights sample_models/single_lstm.h5 --format table
	@echo
	@echo '$$ lstm-inspect trace sample_models/single_lstm.keras sample_models/single_lstm.csv'
	@$(BIN)/lstm-inspect trace sample_models/single_lstm.keras sample_models/single_lstm.csv --format table
	@echo
	@echo '$$ lstm-inspect trace sample_models/single_lstm.keras sample_models/single_lstm.csv | head -5'
	@$(BIN)/lstm-inspect trace sample_models/single_lstm.keras sample_models/single_lstm.csv | head -5

test: $(STAMP_TEST)
	$(BIN)/python -m pytest -q

bench: $(STAMP_TEST)
	$(BIN)/python bench/run.py

fuzz: $(STAMP_TEST)
	$(BIN)/python -m pytest -q tests/test_fuzz.py --fuzz-seconds=$${FUZZ_SECONDS:-60}

sample-models: $(STAMP_TEST)
	$(BIN)/python sample_models/make_samples.py

lint: $(STAMP_TEST)
	$(PIP) install -q ruff
	$(BIN)/ruff check lstm_inspect tests bench sample_models

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
