"""Which pixels pushed the network to an answer: integrated gradients (Sundararajan et al. 2017).

A few lines of autograd rather than Captum: one method, on one small network, is all the lab
draws, and the method's own axiom (the attributions add up to the change in the class's logit
from the baseline to the digit) is what tests/test_attribution.py checks.
"""

from __future__ import annotations

import torch
from torch import nn


def integrated_gradients(
    net: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int = 32
) -> torch.Tensor:
    """Attributions of each input pixel to the logit of class target[i] for image x[i], from a
    baseline of the image's own background (its smallest value: black, standardised or not),
    by the midpoint rule over `steps` points of the straight path."""
    dtype = next(net.parameters()).dtype
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().to(dtype)  # clones: tensors of a test epoch are inference ones
        index = target.detach().clone().view(-1, 1).to(x.device)
        baseline = x.flatten(1).amin(1).view(-1, *([1] * (x.dim() - 1))).expand_as(x)
        total = torch.zeros_like(x)
        for k in range(steps):
            point = (baseline + (k + 0.5) / steps * (x - baseline)).requires_grad_(True)
            logits = net(point)
            chosen = logits.gather(1, index).sum()
            (grad,) = torch.autograd.grad(chosen, point)
            total += grad
        return ((x - baseline) * total / steps).detach()
