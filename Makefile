# `make help` lists the targets. Every target that runs Python installs what it needs first.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
# uv on PATH, else the copy `make install` puts into this Python with pip
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
ARGS ?=

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: ## create .venv from uv.lock, bytecode compiled (halves every start where PYTHONDONTWRITEBYTECODE is set)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet --compile-bytecode

train: install ## train the Keras lab's CNN, 3 epochs on MNIST, then test (extra overrides: ARGS="seed=7")
	$(PY) train.py $(ARGS)

# two pytest workers (pytest-xdist): the suite is mostly subprocesses that start single-threaded;
# each test file runs on one worker, so a module-scoped fixture (a trained run, the SLURM cluster) is
# built once; the files in the order tests/conftest.py sorts them (the longest tiers first). The
# slowest 20 tests are listed at the end, so a run that nears ten minutes says where the time went
XDIST := -n 2 --dist loadfile --no-loadscope-reorder
test: install browser fashion-mnist ## the whole suite, four tiers: fast, slow (train.py subprocesses, a real browser), cluster (SLURM), real MNIST
	$(PY) -m pytest $(XDIST) --durations=20 $(ARGS)

test-cluster: install ## only the SLURM tier: a real one-node cluster (slurm-wlm, munge) started and stopped by scripts/slurm_cluster.sh
	$(PY) -m pytest -m cluster $(ARGS)

# a Debian package, installed only when root (a shell command that fails otherwise)
apt_install = { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null) ; }

browser: ## headless Chromium for the TensorBoard page tests and `make screenshots` (Debian's package; installed when root)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  $(call apt_install,chromium) || \
	  echo "make browser: no Chromium and not root; install it (apt-get install chromium) or the browser test fails"

fashion-mnist: ## Debian's Fashion-MNIST for data=fashion_mnist and its real-data test (installed when root)
	@[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || \
	  $(call apt_install,dataset-fashion-mnist) || \
	  echo "make fashion-mnist: not installed and not root; apt-get install dataset-fashion-mnist, or its test is skipped"

screenshots: install browser ## TensorBoard's pages of the newest completed run under outputs/ as PNGs in outputs/screenshots/ (RUN=<tensorboard dir> for another)
	$(PY) scripts/tensorboard_screenshots.py "$${RUN:-}" outputs/screenshots

# its commands stop before the heavy imports, so real starts cost less than a zygote's imports
test-fast: install ## only the fast tier (1 to 2.5 minutes, by CPU kind)
	MNIST_TEST_EXEC=1 $(PY) -m pytest $(XDIST) -m "not slow and not real_data" $(ARGS)

notebook: install ## run notebooks/mnist_lab.ipynb in full mode (a few minutes; MNIST_LAB_FAST=1 make notebook: a slice, under a minute); the executed copy lands in outputs/notebook/
	$(PY) notebooks/execute.py

notebook-strip: install ## remove outputs from the committed notebook
	$(PY) notebooks/execute.py --strip

KERAS := .bench-keras/bin/python
bench: install $(KERAS) ## train.py vs a plain PyTorch loop vs the Keras lab's Keras notebook, medians of 3 (ARGS="--runs 5")
	$(PY) bench/bench.py --keras $(KERAS) $(ARGS)

bench-speedrun: install $(KERAS) ## experiment=speedrun as planned here vs its fixed recipe, seeds 1-5, against Keras's fit
	$(PY) bench/bench.py --mode speedrun --runs 5 --keras $(KERAS) $(ARGS)

bench-step: install ## where train.py's step goes: a plain loop, bare Lightning, ours, the callbacks (5 rounds, one process)
	$(PY) bench/bench.py --mode step --runs 5 $(ARGS)

$(KERAS): # TensorFlow for the Keras side of the bench only: its own environment, bytecode compiled
	$(UV) venv --quiet --python 3.11 .bench-keras
	$(UV) pip install --quiet --python $(KERAS) --compile-bytecode tensorflow-cpu==2.21.0 numpy

gpu-bench: ## on a GPU machine: Keras lab workload, speedrun, frontier and a plain loop, one table (bench/gpu.sh, < 10 min)
	bash bench/gpu.sh $(ARGS)

GPU_WHEELS := hydra-core omegaconf antlr4-python3-runtime
gpu-pack: install ## .gpu/: the pure-Python wheels an offline GPU machine's python3 lacks, and MNIST gzipped (for bench/gpu.sh)
	rm -rf .gpu && mkdir -p .gpu/wheels .gpu/data
	python3 -m pip wheel --quiet --no-deps -w .gpu/wheels $$(for p in $(GPU_WHEELS); do \
	  echo "$$p==$$($(PY) -c "import importlib.metadata as m; print(m.version('$$p'))")"; done)
	for f in "$$($(PY) -c 'from mnist_cnn.data.sources import default_data_dir as d; print(d())')"/MNIST/raw/*-ubyte; do \
	  gzip -c "$$f" >".gpu/data/$$(basename "$$f").gz"; done
	du -sh .gpu

SEED ?= 0
adversarial: install ## hostile inputs to every entry point, generated per class (SEED=N draws others); about 15 min
	$(PY) scripts/adversarial_pass.py --seed $(SEED)

lint: install ## ruff check + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install ## apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

tensorboard: install ## serve the dashboards of every run under outputs/
	$(PY) -m mnist_cnn.cli.tensorboard --logdir outputs --host localhost

clean: ## remove caches (keeps outputs/ and .venv; `make clean-outputs` removes runs)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

clean-outputs: ## delete every run under outputs/ (asks first)
	@read -p "Delete everything under outputs/? [y/N] " ok && [ "$$ok" = y ] && find outputs -mindepth 1 -not -name .gitkeep -delete || echo kept

.PHONY: help install train bench bench-speedrun bench-step adversarial test test-fast test-cluster browser fashion-mnist screenshots notebook notebook-strip lint format tensorboard clean clean-outputs
