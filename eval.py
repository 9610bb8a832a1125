"""Evaluate a checkpoint on the test set: `python eval.py ckpt_path=PATH` (Hydra overrides)."""

from mnist_cnn.cli.eval import main

if __name__ == "__main__":
    main()
