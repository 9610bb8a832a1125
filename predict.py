"""Predict digits: `python predict.py PATH... [--ckpt PATH] [--json] [--save-inputs DIR]`."""

from mnist_cnn.predict import main

if __name__ == "__main__":
    main()
