"""`python eval.py ckpt_path=PATH [key=value ...]`: test a checkpoint in a run dir of its own."""

from __future__ import annotations

import os
import sys

from mnist_cnn import REPO_ROOT, process
from mnist_cnn.cli import (
    check_overrides,
    exit_on_user_error,
    record_failure,
    record_stop,
    record_stops,
    stopped_by_signal,
    user_errors,
)


def main() -> None:
    process.starting_up()
    process.install_quick_exit()
    exit_on_user_error(check_overrides, sys.argv[1:])
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    os.environ.setdefault("PROJECT_ROOT", str(REPO_ROOT))
    completed = []

    @hydra.main(version_base="1.3", config_path=str(REPO_ROOT / "conf"), config_name="eval")
    def task(cfg) -> float:
        record_stops(HydraConfig.get().runtime.output_dir)
        acc = evaluate_checkpoint(cfg)
        completed.append(HydraConfig.get().mode == RunMode.RUN)
        return acc

    with stopped_by_signal(completed=lambda: bool(completed) and completed[0]):
        task()
    if completed and completed[0]:
        process.finish(0)


def evaluate_checkpoint(cfg) -> float:
    """Validate, read the checkpoint (refused before Lightning loads when bad or unsafe), set up
    the process, test; an interrupt exits 130/143."""
    from mnist_cnn.config import validate
    from mnist_cnn.group_checks import given_on_command_line
    from mnist_cnn.members import load_all
    from mnist_cnn.preflight import (
        check_accelerator,
        check_data_links,
        check_no_training_settings,
        check_one_process,
    )

    with user_errors(on_error=record_failure):  # the run dir says why too
        # the seed comes from the checkpoint; the checkpoint itself is checked as it is read
        validate(cfg, ignore=("seed", "ckpt_path"), training=False)
        check_one_process(cfg)
        check_no_training_settings(cfg, given_on_command_line())
        check_accelerator(cfg)
        check_data_links(cfg)
        checkpoint = load_all(cfg.ckpt_path)
    process.configure(cfg.threads)
    from mnist_cnn.errors import InterruptedDuringTest, Stopped
    from mnist_cnn.eval import evaluate

    process.started()

    try:
        with user_errors(on_error=record_failure):
            return evaluate(cfg, checkpoint)["test/acc"]
    except InterruptedDuringTest as exc:
        print(f"interrupted: {exc}; run the same command again", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except Stopped as exc:  # outside the test, before or after its record began
        record_stop(exc)
        raise
