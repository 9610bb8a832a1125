"""nn.Dropout whose CPU mask costs what drawing uniform numbers costs, on every CPU.

torch draws a CPU dropout mask (`bernoulli_`) with MKL's vectorised generator only on Intel
processors; on any other CPU (AMD's) it draws one double-precision Bernoulli number at a time,
several times slower than `torch.rand` fills the same tensor (docs/performance.md, "Dropout on
the AMD kinds"). There the mask here is `rand >= p`: the same distribution (each element kept with
probability 1 - p, survivors scaled by 1 / (1 - p), in the input's dtype, as torch's CPU dropout
scales them), the same memory format, and its gradient the same mask through autograd. On Intel
with MKL, and on any accelerator (a fused kernel), it is torch's own dropout, unchanged.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def torch_draws_masks_serially() -> bool:
    """True where torch's CPU bernoulli_ takes its element-at-a-time path: no MKL, or a CPU
    whose vendor is not Intel (torch's own test, through cpuinfo)."""
    if not torch.backends.mkl.is_available():
        return True
    try:
        info = CPUINFO.read_text()
    except OSError:  # not Linux: torch's dropout, as before
        return False
    vendors = {
        line.partition(":")[2].strip() for line in info.splitlines() if line.startswith("vendor_id")
    }
    return bool(vendors) and "GenuineIntel" not in vendors


class Dropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cpu = self.training and self.p > 0 and x.device.type == "cpu"
        if not (cpu and torch_draws_masks_serially()):
            return F.dropout(x, self.p, self.training, self.inplace)
        if self.p >= 1:
            return x * 0
        keep = torch.rand_like(x, dtype=torch.float32) >= self.p
        noise = keep.to(x.dtype).div_(1 - self.p)
        return x.mul_(noise) if self.inplace else x * noise
