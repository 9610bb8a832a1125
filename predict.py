"""Predict digits: `python predict.py PATH... [--ckpt PATH] [--json] [--save-inputs DIR]`."""

from mnist_cnn.cli.predict import main

if __name__ == "__main__":
    main()
