"""Several trained networks, and optionally shifted copies of each digit, voting as one network.

The members' softmax probabilities are averaged (over members and, with test-time augmentation,
over the digit and its four one-pixel shifts); the output is the log of that mean, so argmax is the
ensemble's prediction and cross-entropy on it is the ensemble's negative log-likelihood. eval.py
tests it like any one network: the confusion matrix, mistakes and per-class tables are the
ensemble's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# the digit itself, then one pixel down, up, right, left: MNIST digits sit centred with a blank
# border, so a one-pixel shift loses no ink
TTA_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved dy pixels down and dx right, the uncovered border filled with zeros."""
    if dy == dx == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))  # zeros: a border of background
    return padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]


class Ensemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module], tta: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one network")
        self.members = nn.ModuleList(members)
        self.shifts = TTA_SHIFTS if tta else TTA_SHIFTS[:1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for net in self.members:
            for dy, dx in self.shifts:
                p = F.softmax(net(shift(x, dy, dx)).float(), dim=1)
                total = p if total is None else total + p
        mean = total / (len(self.members) * len(self.shifts))
        # the smallest normal float32 keeps log finite where every member gives a class 0
        return torch.log(mean.clamp_min(torch.finfo(torch.float32).tiny))
