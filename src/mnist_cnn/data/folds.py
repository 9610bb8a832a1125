"""K-fold cross-validation over a training set: stratified by class, the same folds for every run.

The folds depend only on the labels and K (never on the run's seed), so two recipes, or two
seeds of one recipe, validate on exactly the same digits fold by fold: their results pair.
"""

from __future__ import annotations

import numpy as np

# the folds' own shuffle, fixed: a fold is a property of the data, not of a run
FOLD_SEED = 20_260_101


def stratified_folds(labels: np.ndarray, folds: int) -> list[np.ndarray]:
    """K disjoint index arrays (each sorted) whose union is every index: each class shuffled,
    the classes laid end to end, and positions dealt round-robin, so every fold holds each class
    within one digit of its share and the folds' sizes differ by at most one."""
    if folds < 2 or folds > len(labels):
        raise ValueError(f"folds={folds} for {len(labels)} samples: need 2 <= folds <= samples")
    rng = np.random.default_rng(FOLD_SEED)
    labels = np.asarray(labels)
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)]
    )
    assignment = np.empty(len(labels), dtype=np.int64)
    assignment[order] = np.arange(len(order)) % folds
    return [np.flatnonzero(assignment == i) for i in range(folds)]


def split(labels: np.ndarray, folds: int, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) of fold `fold` of `folds`."""
    parts = stratified_folds(labels, folds)
    val = parts[fold]
    train = np.sort(np.concatenate([p for i, p in enumerate(parts) if i != fold]))
    return train, val
