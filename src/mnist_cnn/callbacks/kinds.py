"""Which callbacks change what a run trains or tests, rather than only watching it.

A resume keeps them as its checkpoint's run had them (resumable.py), and compare.py groups runs
by them; the others (dashboards, checkpoints, progress, summaries) may differ between runs of
the same arithmetic. Known by the names of Lightning's classes, so that deciding imports
nothing (compare.py reads metrics.json files only); a callback of one's own counts as watching.
"""

from __future__ import annotations

import functools
from typing import Any

CHANGES_THE_RUN = frozenset({
    "WeightAveraging", "EMAWeightAveraging", "StochasticWeightAveraging",  # test the average
    "EarlyStopping", "Timer",  # end the fit early
    "BaseFinetuning", "BackboneFinetuning", "ModelPruning",  # freeze or prune weights
    "GradientAccumulationScheduler", "BatchSizeFinder", "LearningRateFinder",  # change the steps
    "LambdaCallback",  # whatever its functions do
})  # fmt: skip
LIGHTNING = ("lightning.pytorch.callbacks.", "pytorch_lightning.callbacks.")
# those that act while a run trains and never in a test (the others may: a batch size finder
# scales the test's batches, a lambda does whatever it is given, a timer times the test too)
TRAINING_ONLY = CHANGES_THE_RUN - {"LambdaCallback", "BatchSizeFinder", "Timer"}


def changes_the_run(target: Any) -> bool:
    """Whether a callback's `_target_` is one of Lightning's that change the weights, the steps
    or the length of the fit."""
    return (
        isinstance(target, str)
        and target.startswith(LIGHTNING)
        and target.rsplit(".", 1)[-1] in CHANGES_THE_RUN
    )


@functools.cache
def changing_in_conf() -> tuple[frozenset[str], frozenset[str]]:
    """(the conf/callbacks/ options, the callback names) whose callbacks change the run: an
    override naming one is the recipe's (`callbacks=[default,ema]`, `callbacks.ema.decay=0.9`)."""
    from omegaconf import OmegaConf

    from mnist_cnn import REPO_ROOT

    options, names = set(), set()
    for option in sorted((REPO_ROOT / "conf" / "callbacks").glob("*.yaml")):
        entries = OmegaConf.to_container(OmegaConf.load(option)) or {}
        for name, entry in entries.items():
            if isinstance(entry, dict) and changes_the_run(entry.get("_target_")):
                options.add(option.stem)
                names.add(name)
    return frozenset(options), frozenset(names)


def acts_in_training_only(target: Any) -> bool:
    """Whether a callback's `_target_` is one of Lightning's that change a run as it trains and
    do nothing in a test (eval.py refuses them)."""
    return changes_the_run(target) and target.rsplit(".", 1)[-1] in TRAINING_ONLY
