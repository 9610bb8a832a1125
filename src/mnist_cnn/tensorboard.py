"""RunLogger: Lightning's TensorBoardLogger, with dashboards that open on what matters.

TensorBoard sorts tag groups by name and expands the first two (Scalars, Images and Time
Series alike). Lightning's names put `epoch` (its step counter) and one-point summary charts
there, and leave the curves collapsed. This logger:
- names the epoch curves by metric, so `acc/` (train and val side by side) and `loss/` open
  first: train/acc -> acc/train, val/loss -> loss/val, train/batch_loss -> loss/train_step.
  metrics.json, checkpoints and callbacks keep Lightning's names (`val/acc`);
- drops Lightning's `epoch` counter and the test counts (one-point charts; the counts are in
  metrics.json and the run summary);
- writes each run's events under tensorboard/<label>, where the label is the job's own
  overrides (`seed=1,optimizer.lr=0.003`): the run's name in TensorBoard's run list and the
  HParams table's trial id.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from mnist_cnn.callbacks.kinds import changes_the_run, changing_in_conf

# Lightning's metric names -> the tags TensorBoard shows
TAGS = {
    "train/acc": "acc/train",
    "val/acc": "acc/val",
    "train/loss": "loss/train",
    "val/loss": "loss/val",
    "train/batch_loss": "loss/train_step",
}
DROPPED = frozenset({"epoch", "test/correct", "test/total"})
# overrides that change where a run writes or what it shows, never what it computes: left out
# of run names (the full command line stays in .hydra/overrides.yaml)
NOT_IN_LABEL = (
    "hydra", "paths", "callbacks", "logger", "threads", "ckpt_path", "data.data_dir", "optuna",
    "hparams_search",
    "data.download", "data.num_workers", "data.eval_batch_size", "trainer.default_root_dir",
)  # fmt: skip
MAX_LABEL = 120  # characters: a file name, and a column a person can read
MAX_LABEL_BYTES = 200  # its UTF-8, within a file name's 255 bytes (a CJK character is three)


def tag(name: str) -> str:
    """The TensorBoard tag a Lightning metric name is logged under."""
    return TAGS.get(name, name)


def override_key(override: str) -> str:
    """`+trainer.devices=2` -> `trainer.devices`; `~callbacks.filters` -> `callbacks.filters`."""
    return override.split("=", 1)[0].lstrip("+~")


def recipe_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that change what a run computes, in the order given."""
    overrides = list(overrides)
    added = {  # callbacks this command line adds whose class changes the run
        override_key(item).split(".")[1]
        for item in overrides
        if override_key(item).startswith("callbacks.") and changes_the_run(_value(item))
    }
    kept = []
    for item in overrides:
        key = override_key(item)
        if _changes_the_run(item, added) or not any(
            key == p or key.startswith(p + ".") for p in NOT_IN_LABEL
        ):
            kept.append(item.lstrip("+"))
    return kept


def _value(item: str) -> str:
    return item.split("=", 1)[1] if "=" in item else ""


def _changes_the_run(item: str, added: set[str]) -> bool:
    """A callbacks override that adds, drops or sets a callback changing what the run computes
    (weight averaging: callbacks/kinds.py), unlike the dashboards'."""
    key = override_key(item)
    if key != "callbacks" and not key.startswith("callbacks."):
        return False
    options, names = changing_in_conf()
    if key == "callbacks":
        return any(option.strip() in options for option in _value(item).strip("[]").split(","))
    return key.split(".")[1] in names | added


def run_label(overrides: Iterable[str], seed: Any) -> str:
    """A run's name: its recipe overrides, comma-separated, always naming the seed.

    Safe as one directory name: a path separator becomes `_`; over MAX_LABEL characters (or
    MAX_LABEL_BYTES of UTF-8) the middle is cut, keeping the first overrides and the last, the
    seed among them (the run directory, not the label, keeps runs apart).
    """
    items = recipe_overrides(overrides)
    if not any(override_key(i) == "seed" for i in items):
        items.append(f"seed={seed}")
    label = ",".join(items).replace(os.sep, "_").replace("\0", "")
    if label in ("", ".", ".."):
        label = f"seed={seed}"
    whole, kept = label, MAX_LABEL - 3
    while len(label) > MAX_LABEL or len(label.encode()) > MAX_LABEL_BYTES:
        head = kept // 2
        label = whole[:head] + "..." + whole[len(whole) - (kept - head) :]
        kept -= 1
    return label


def job_overrides() -> list[str]:
    """The overrides of the Hydra job running now (its sweep parameters included); none outside
    a Hydra run (a notebook, a test composing its own config)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


class RunLogger(TensorBoardLogger):
    """Events in <save_dir>/tensorboard/<run label>/; see the module docstring."""

    def __init__(
        self,
        save_dir: str | os.PathLike,
        seed: Any = None,
        overrides: list[str] | None = None,
        name: str = "tensorboard",
        **kwargs: Any,
    ) -> None:
        self.overrides = job_overrides() if overrides is None else list(overrides)
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir, name=name, version=run_label(self.overrides, seed), **kwargs)

    @property
    def log_dir(self) -> str:
        """<save_dir>/<name>/<label>, taken literally: Lightning's own expands `$VAR` and `~`
        anywhere in it, so a run dir (or a label) holding `$` wrote its events elsewhere."""
        return os.path.join(self.root_dir, str(self.version))

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        shown = {tag(k): v for k, v in metrics.items() if k not in DROPPED}
        if shown:
            super().log_metrics(shown, step)


def write_hparams(
    logger: TensorBoardLogger,
    params: Mapping[str, Any],
    metric_tags: Iterable[str],
    varying: Iterable[str] = (),
) -> None:
    """The HParams dashboard's row for this run: params as columns, and metric columns read by
    TensorBoard from scalar tags the run already logs (their last value), so no duplicate
    one-point `hp/` charts are written. TensorBoard orders the columns `differs` first, then by
    name, and ticks the first few: the columns in `varying` (a sweep's parameters) are marked
    so, else a seed sweep would open with `seed` hidden behind the constant settings."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard.summary import hparams

    tags = dict.fromkeys(metric_tags, 0.0)  # only the names are used
    writer = logger.experiment.file_writer
    # TensorBoard prints every number with four decimals (batch 128.00, seed 3.0000): integers
    # go as text, which it prints as they are (hparams.yaml keeps their types)
    shown = {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
             for k, v in params.items()}  # fmt: skip
    experiment, start, end = hparams(shown, tags)
    content = experiment.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(content.content)
    marked = set(varying)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in marked
    content.content = data.SerializeToString()
    for summary in (experiment, start, end):
        writer.add_summary(summary)
    logger.hparams.update(params)  # what hparams.yaml beside the events holds
