"""Train the MNIST CNN: `python train.py [key=value ...]` (Hydra overrides; `--help` lists them)."""

from mnist_cnn.cli.train import main

if __name__ == "__main__":
    main()
