"""The checkpoints eval.py tests: ckpt_path=PATH, one; ckpt_path=[A,B,...], an ensemble's
members, each read once and each network counted once (by its weights, not by its file name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_cnn.checkpoints import Checkpoint, load
from mnist_cnn.errors import UserError


def load_all(spec: Any) -> Checkpoint | list[Checkpoint]:
    """ckpt_path=PATH: one checkpoint; ckpt_path=[A,B,...]: several (eval.py's ensembles)."""
    from omegaconf import OmegaConf

    if not OmegaConf.is_list(spec) and not isinstance(spec, list):
        return load(spec)
    paths = list(spec)
    if not paths:
        raise UserError("ckpt_path=[] names no checkpoint: give one path or a list [A,B,...]")
    repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
    if repeated:
        raise UserError(
            f"ckpt_path lists {', '.join(repeated)} more than once: an ensemble would count its "
            "vote twice; name each checkpoint once"
        )
    loaded = [load(p) for p in paths]
    _check_distinct_weights(loaded)
    return loaded


def _check_distinct_weights(members: list[Checkpoint]) -> None:
    """An ensemble counts each network once: two files with the same weights (a link to a file,
    last.ckpt beside the best checkpoint of the same epoch) are one model, named by content."""
    from mnist_cnn.runs import tensors_sha256

    seen: dict[str, Path] = {}
    for member in members:
        state = member.data["state_dict"]
        # the network's weights as a run's weights_sha256 hashes them
        digest = tensors_sha256({k.removeprefix("net."): v for k, v in state.items()
                                 if k.startswith("net.")})  # fmt: skip
        if digest in seen:
            raise UserError(
                f"ckpt_path: {seen[digest]} and {member.path} hold the same network weights "
                f"(sha256 {digest[:12]}...): an ensemble would count one model twice; leave "
                "one of them out"
            )
        seen[digest] = member.path
