#!/usr/bin/env bash
# The benchmark environment: the project plus its peers (MONAI, smp, nnU-Net v2), kept out of the project's
# dependencies. Usage: bash benchmarks/setup_bench_env.sh && .bench-venv/bin/python benchmarks/bench_models.py
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .bench-venv
.bench-venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
.bench-venv/bin/pip install -q -e ".[export,fast]" monai segmentation-models-pytorch timm nnunetv2
