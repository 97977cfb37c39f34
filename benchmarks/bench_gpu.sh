#!/usr/bin/env bash
# The GPU benchmark in one command (the first time a GPU is at hand): the GPU tests, then training
# images/s with AMP, inference latency/throughput and peak memory against MONAI, written to
# benchmarks/results_gpu.json. Usage: bash benchmarks/bench_gpu.sh   (or: make bench-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
test -x .bench-venv/bin/python || bash benchmarks/setup_bench_env.sh
PY=.bench-venv/bin/python
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -m pytest -q -m gpu -p no:warnings tests || true   # GPU tests (reported, not fatal to the benchmark)
$PY benchmarks/bench_gpu.py --json benchmarks/results_gpu.json "$@"
