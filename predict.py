"""Predict digits: `python predict.py PATH... [--ckpt PATH] [--json] [--save-inputs DIR]`."""

from mnist_cnn.cli import exit_now
from mnist_cnn.predict import main

if __name__ == "__main__":
    main()  # errors leave through sys.exit, with the usual teardown
    exit_now(0)
