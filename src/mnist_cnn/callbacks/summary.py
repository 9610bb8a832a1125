"""The model summary at fit start: the network's layers and parameter counts, nothing else.

Lightning's table also lists the metric objects (`metrics`, `test_correct`: 0 parameters) and a
FLOPs column and "Total Flops" line that read 0 unless the module has an example input: both
say nothing true about the run, so they are left out.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary
from torchmetrics import Metric

log = logging.getLogger(__name__)


def _holds_metrics(module: Any) -> bool:
    children = list(module.children())
    return isinstance(module, Metric) or (
        bool(children) and all(isinstance(c, Metric) for c in children)
    )


class NetworkSummary(ModelSummary):
    """ModelSummary without metric rows or a FLOPs count of 0."""

    _metric_names: frozenset[str] = frozenset()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._metric_names = frozenset(
            name for name, child in pl_module.named_children() if _holds_metrics(child)
        )
        super().on_fit_start(trainer, pl_module)

    def summarize(
        self,
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        # Lightning's formatter is private; its public summarize() prints the 0 FLOPs line
        from lightning.pytorch.utilities.model_summary.model_summary import (
            _format_summary_table,
        )

        names = dict(summary_data).get("Name", [])
        keep = [i for i, n in enumerate(names) if n.split(".")[0] not in self._metric_names]
        columns = [
            (title, [values[i] for i in keep])
            for title, values in summary_data
            if not (title == "FLOPs" and not total_flops)
        ]
        table = _format_summary_table(
            total_parameters,
            trainable_parameters,
            model_size,
            total_training_modes,
            total_flops,
            *columns,
        )
        if not total_flops:
            table = "\n".join(line for line in table.splitlines() if "Total Flops" not in line)
        log.info("\n%s", table)
