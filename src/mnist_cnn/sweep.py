"""Hydra callback: after a multirun, compare its jobs and fail the sweep if any job failed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    """Prints the compare table of the sweep dir and writes comparison.* there."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # imported here: Hydra builds its callbacks for single runs too, which need none of this
        from mnist_cnn.compare import compare
        from mnist_cnn.compare_report import markdown, write
        from mnist_cnn.errors import UserError

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            result = compare([str(sweep_dir)])
        except UserError as exc:
            print(f"error: sweep {sweep_dir}: {exc}", file=sys.stderr)
            sys.exit(1)
        print(f"\nSweep summary ({sweep_dir}):\n{markdown(result)}", flush=True)
        write(result, sweep_dir)
        if result["excluded"]:
            print(
                f"error: {len(result['excluded'])} job(s) of the sweep did not complete; "
                "see the Excluded list above and each job's metrics.json",
                file=sys.stderr,
            )
            sys.exit(1)
