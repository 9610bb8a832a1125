"""Per-sample random affine augmentation of a whole batch at once, seeded by (seed, step).

torchvision's RandomAffine draws one transform per call, i.e. one for the whole batch; a grid
per sample costs one affine_grid + grid_sample for all of them. The draw depends only on
(seed, global step), so a resumed run augments exactly like an unbroken one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


class RandomAffineBatch:
    """Rotate by up to +-degrees, shift by up to +-translate of the size, scale within scale."""

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] = (0.9, 1.1),
        seed: int = 0,
    ) -> None:
        self.degrees, self.translate, self.scale, self.seed = degrees, translate, tuple(scale), seed

    def __call__(self, x: torch.Tensor, step: int, rank: int | None = None) -> torch.Tensor:
        """rank: the process's rank in a multi-process run (its own stream); None in one."""
        n = x.shape[0]
        entropy = [self.seed, step] if rank is None else [self.seed, step, rank]
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        # drawn where the batch is: on a GPU, a host draw would be a copy (and a sync) per step;
        # CPU and CUDA generators give different streams from one seed (docs/reproducibility.md)
        g = torch.Generator(device=x.device).manual_seed(seed)
        u = torch.rand(n, 4, generator=g, device=x.device) * 2 - 1  # uniform in [-1, 1)
        angle = u[:, 0] * math.radians(self.degrees)
        lo, hi = self.scale
        zoom = lo + (u[:, 1] + 1) / 2 * (hi - lo)
        shift = u[:, 2:] * self.translate * 2  # affine_grid's coordinates span [-1, 1]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
