# Quick start: `make demo` (main job on the embedded default) and `make test` (the test suite).
# Both create .venv on first use. torch comes from this machine's local wheels (see DEVELOPERS.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test test-fast lint format bench bench-runtimes test-gpu bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(VENV)/bin/unetpp demo --out runs/demo-$(shell date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow and not gpu" -q

test-fast: $(STAMP)  # while working: lint, the layers, the suite without the fault, DDP and data-set tests (150 s of 280 s here)
	$(PY) -m ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow and not gpu and not data and not bad_input" -q --ignore=tests/scale --ignore=tests/faults

test-gpu: $(STAMP)  # on a CUDA machine: train with AMP, predict, export, DDP on every GPU (skipped without CUDA)
	$(PY) -m pytest -m gpu -q -rs tests

bench:  # the model benchmark against MONAI, in a separate environment that holds the peers
	bash benchmarks/setup_bench_env.sh
	.bench-venv/bin/python benchmarks/bench_models.py --out benchmarks/results_models.json

bench-runtimes: $(STAMP)  # every installed runtime and precision on this machine (what --runtime auto chooses from)
	$(VENV)/bin/unetpp bench --model unet++ --shapes 16x1x96x96 1x1x512x512 --runtimes --json runtimes.json --overwrite

bench-gpu:  # training with AMP, inference and peak memory against MONAI on a GPU, in one command
	bash benchmarks/bench_gpu.sh

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .import_linter_cache
