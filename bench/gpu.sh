#!/usr/bin/env bash
# The GPU check, one command, under ten minutes on one H100/H200:  bash bench/gpu.sh [--save DIR]
# Installs what it needs, then bench/gpu.py: the Keras lab workload (bf16 and fp32), experiment=speedrun
# (5 seeds), experiment=frontier (seed 1) and the plain PyTorch loop on the GPU, one table.
# Offline GPU machines whose python3 already has torch and lightning: `make gpu-pack` here first
# puts the missing wheels and the MNIST files into .gpu/, which this script then uses.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .gpu/wheels ]; then
  PY=python3
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/mnist-cnn-site .gpu/wheels/*.whl
  export PYTHONPATH="/tmp/mnist-cnn-site:$PWD/src"
else
  make -s install
  PY=.venv/bin/python
fi
if [ -z "${MNIST_DATA_DIR:-}" ] && [ -d .gpu/data ]; then
  mkdir -p /tmp/mnist-cnn-data/MNIST/raw
  for f in .gpu/data/*.gz; do gunzip -c "$f" >"/tmp/mnist-cnn-data/MNIST/raw/$(basename "$f" .gz)"; done
  export MNIST_DATA_DIR=/tmp/mnist-cnn-data
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec "$PY" bench/gpu.py "$@"
