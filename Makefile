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

.PHONY: install demo test test-other-blas bench fuzz sample-models lint clean

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

# One pytest worker per core (pytest-xdist): the Keras fixture cache (tests/keras_cache.py) is
# written under temporary names and renamed, so workers building the same model do not collide.
test: lint
	$(BIN)/python -m pytest -q -n auto

# The last digits of a float32 depend on the OpenBLAS kernel (picked per processor, or forced by
# OPENBLAS_CORETYPE).  Run the README examples and the Keras comparisons again under another
# kernel than this shell's (Haswell when none is forced, the detected one when one is), so that
# digits that hold on one kernel only cannot pass here and fail elsewhere.  .ci/run runs it.
OTHER_BLAS = $(if $(OPENBLAS_CORETYPE),env -u OPENBLAS_CORETYPE,env OPENBLAS_CORETYPE=Haswell)
BLAS_KERNEL = $(BIN)/python -c "import numpy, threadpoolctl; \
	print('OpenBLAS kernel:', *{i.get('architecture') for i in threadpoolctl.threadpool_info() if i.get('internal_api') == 'openblas'})"

test-other-blas: $(STAMP_TEST)
	@$(BLAS_KERNEL) | sed 's/^/make test ran with the /'
	@$(OTHER_BLAS) $(BLAS_KERNEL) | sed 's/^/rerunning the README examples and Keras comparisons with the /'
	$(OTHER_BLAS) $(BIN)/python -m pytest -q -n auto -m "docs or keras_oracle"

bench: $(STAMP_TEST)
	$(BIN)/python bench/run.py

fuzz: $(STAMP_TEST)
	$(BIN)/python -m pytest -q tests/test_fuzz.py --fuzz-seconds=$${FUZZ_SECONDS:-60}

sample-models: $(STAMP_TEST)
	$(BIN)/python sample_models/make_samples.py

lint: $(STAMP_TEST)
	$(BIN)/ruff check lstm_inspect tests bench sample_models tools
	$(BIN)/mypy
	$(BIN)/python tools/doc_coverage.py --check --quiet

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache tests/.cache
