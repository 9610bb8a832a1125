"""Evaluate a checkpoint on the test set: `python eval.py ckpt_path=PATH` (Hydra overrides)."""

import os
import sys
from pathlib import Path

import hydra

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg) -> float:
    from mnist_cnn import checkpoints
    from mnist_cnn.cli import exit_on_user_error

    # a bad or unsafe checkpoint is refused before Lightning loads
    exit_on_user_error(checkpoints.load, cfg.ckpt_path)
    from mnist_cnn.callbacks.resume import TestInterrupted
    from mnist_cnn.eval import evaluate

    try:
        return exit_on_user_error(evaluate, cfg)["test/acc"]
    except TestInterrupted as exc:
        print(f"interrupted: {exc}; run the same command again", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
