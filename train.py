"""Train the MNIST CNN: `python train.py [key=value ...]` (Hydra overrides; `--help` lists them)."""

import os
from pathlib import Path

import hydra

# conf/paths resolves outputs/ against the repository, wherever the command is launched from
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg) -> float | None:
    from mnist_cnn.cli import exit_on_user_error
    from mnist_cnn.config import validate

    # settings are checked before torch and Lightning load: a typo answers in a second, not fifteen
    exit_on_user_error(validate, cfg)
    from mnist_cnn.train import run

    metrics = exit_on_user_error(run, cfg)
    return metrics.get("val/acc")  # the objective a Hydra sweeper (e.g. Optuna) maximises


if __name__ == "__main__":
    main()
