"""Evaluate a checkpoint on the test set: `python eval.py ckpt_path=PATH` (Hydra overrides)."""

import os
from pathlib import Path

import hydra

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg) -> float:
    from mnist_cnn.cli import exit_on_user_error
    from mnist_cnn.evaluate import evaluate

    return exit_on_user_error(evaluate, cfg)["test/acc"]


if __name__ == "__main__":
    main()
