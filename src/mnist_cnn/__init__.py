"""Train and understand the conv32-conv64-dense128 CNN on MNIST (Lightning + Hydra)."""

__version__ = "0.1.0"
