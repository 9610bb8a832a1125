"""Which pixels pushed the network to an answer: integrated gradients (Sundararajan et al. 2017).

A few lines of autograd rather than Captum: one method, on one small network, is all the lab
draws, and the method's own axiom (the attributions add up to the change in the class's logit
from the baseline to the digit) is what tests/test_attribution.py checks.
"""

from __future__ import annotations

import torch
from torch import nn

# images per forward and backward pass: several points of the path in one batch, as Captum's
# internal_batch_size does, since a pass over a few images costs its per-operation overhead
# once per point otherwise; the cap bounds the memory an ensemble with TTA holds for backward
# (each member sees every image five times)
MAX_BATCH = 64


def integrated_gradients(
    net: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int = 32
) -> torch.Tensor:
    """Attributions of each input pixel to the logit of class target[i] for image x[i], from a
    baseline of the image's own background (its smallest value: black, standardised or not),
    by the midpoint rule over `steps` points of the straight path. The network is used as it is
    (eval mode: each image's gradient is its own)."""
    dtype = next(net.parameters()).dtype
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().to(dtype)  # clones: tensors of a test epoch are inference ones
        index = target.detach().clone().view(-1, 1).to(x.device)
        baseline = x.flatten(1).amin(1).view(-1, *([1] * (x.dim() - 1))).expand_as(x)
        alphas = (torch.arange(steps, device=x.device, dtype=dtype) + 0.5) / steps
        per_pass = max(1, MAX_BATCH // max(1, len(x)))
        total = torch.zeros_like(x)
        for chunk in alphas.split(per_pass):
            along = chunk.view(-1, *([1] * x.dim()))
            points = (baseline + along * (x - baseline)).flatten(0, 1).requires_grad_(True)
            chosen = net(points).gather(1, index.repeat(len(chunk), 1)).sum()
            (grad,) = torch.autograd.grad(chosen, points)
            total += grad.view(len(chunk), *x.shape).sum(0)
        return ((x - baseline) * total / steps).detach()
