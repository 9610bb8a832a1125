"""What a person reads at the end of a search: best.yaml and Optuna's plots in the sweep dir."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def best_summary(study, sweep_dir: Path) -> dict[str, Any] | None:
    """best.yaml's content: the best trial's value, parameters and run directory, and counts."""
    from optuna.trial import TrialState

    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = study.best_trial
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "objective": "val/acc",
        "best_value": best.value,
        "best_trial": best.number,
        "best_params": dict(best.params),
        "best_run_dir": best.user_attrs.get("run_dir"),
        "trials": {k: v for k, v in counts.items() if v},
        "written_by": str(sweep_dir),
    }


def write_results(study, sweep_dir: Path) -> dict[str, Any] | None:
    """best.yaml and Optuna's plots (optimisation history, parameter importances, slices) in
    the sweep directory; returns best.yaml's content (None: no trial completed)."""
    from mnist_cnn.runs import write_text_atomic

    summary = best_summary(study, sweep_dir)
    if summary is None:
        return None
    write_text_atomic(sweep_dir / "best.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
    _plots(study, sweep_dir)
    return summary


def _plots(study, sweep_dir: Path) -> None:
    # Optuna draws through pyplot, which picks a non-interactive backend on a machine without a
    # display; each figure is closed once saved, so none stays in pyplot's registry
    import warnings

    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    plots = {
        "optuna_history.png": ovm.plot_optimization_history,
        "optuna_importances.png": ovm.plot_param_importances,
        "optuna_slice.png": ovm.plot_slice,
    }
    # matplotlib's notes on categorical axes and Optuna's "experimental" notices say nothing
    # a reader of the search can act on
    category = logging.getLogger("matplotlib.category")
    level = category.level
    category.setLevel(logging.WARNING)
    try:
        for name, plot in plots.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    warnings.simplefilter("ignore", UserWarning)
                    ax = plot(study)
            except (ValueError, RuntimeError, ImportError) as exc:  # e.g. one finished trial
                log.info("%s not drawn: %s", name, exc)
                continue
            _save(ax, sweep_dir / name, plt)
    finally:
        category.setLevel(level)


def _save(ax, path: Path, plt) -> None:
    """Optuna returns one Axes, or an array of them (a slice plot of several settings)."""
    first = ax.flat[0] if hasattr(ax, "flat") else ax
    first.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(first.figure)
