"""Train and understand the conv32-conv64-dense128 CNN on MNIST (Lightning + Hydra)."""

from pathlib import Path

__version__ = "0.1.0"
# the checkout: conf/, outputs/ and the default data/ live here
REPO_ROOT = Path(__file__).resolve().parents[2]
