"""Which callbacks change what a run trains or tests, rather than only watching it.

A resume keeps them as its checkpoint's run had them (resumable.py), and compare.py groups runs
by them; the others (dashboards, checkpoints, progress, summaries) may differ between runs of
the same arithmetic. Known by the names of Lightning's classes, so that deciding imports
nothing (compare.py reads metrics.json files only); a callback of one's own counts as watching.
"""

from __future__ import annotations

from typing import Any

CHANGES_THE_RUN = frozenset({
    "WeightAveraging", "EMAWeightAveraging", "StochasticWeightAveraging",  # test the average
    "EarlyStopping", "Timer",  # end the fit early
    "BaseFinetuning", "BackboneFinetuning", "ModelPruning",  # freeze or prune weights
    "GradientAccumulationScheduler", "BatchSizeFinder", "LearningRateFinder",  # change the steps
    "LambdaCallback",  # whatever its functions do
})  # fmt: skip
LIGHTNING = ("lightning.pytorch.callbacks.", "pytorch_lightning.callbacks.")


def changes_the_run(target: Any) -> bool:
    """Whether a callback's `_target_` is one of Lightning's that change the weights, the steps
    or the length of the fit."""
    return (
        isinstance(target, str)
        and target.startswith(LIGHTNING)
        and target.rsplit(".", 1)[-1] in CHANGES_THE_RUN
    )
