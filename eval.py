"""Evaluate a checkpoint on the test set: `python eval.py ckpt_path=PATH` (Hydra overrides)."""

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))
_FINISHED = False  # a single evaluation that completed: the process may end without the teardown


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg) -> float:
    from mnist_cnn import checkpoints
    from mnist_cnn.cli import exit_on_user_error

    # a bad or unsafe checkpoint is refused before Lightning loads
    exit_on_user_error(checkpoints.load, cfg.ckpt_path)
    from mnist_cnn.callbacks.resume import TestInterrupted
    from mnist_cnn.eval import evaluate

    global _FINISHED
    try:
        acc = exit_on_user_error(evaluate, cfg)["test/acc"]
    except TestInterrupted as exc:
        print(f"interrupted: {exc}; run the same command again", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    _FINISHED = HydraConfig.get().mode == RunMode.RUN
    return acc


if __name__ == "__main__":
    main()  # errors, interrupts and sweeps leave through sys.exit or here, with the usual teardown
    if _FINISHED:
        from mnist_cnn.cli import exit_now

        exit_now(0)
