"""Integrated gradients: the attributions add up to the change of the class's logit from the
baseline to the digit (the method's completeness axiom), on generated digits and networks."""

from __future__ import annotations

import pytest
import torch

from mnist_cnn.attribution import integrated_gradients
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.models.speed_cnn import SpeedCNN


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("model", [SimpleCNN, SpeedCNN])
def test_attributions_add_up_to_the_logit_change(seed, model):
    torch.manual_seed(seed)
    net = model().eval()
    x = torch.rand(4, 1, 28, 28) * (torch.rand(4, 1, 28, 28) > 0.7)  # sparse strokes on black
    target = torch.randint(0, 10, (4,))
    attr = integrated_gradients(net, x, target, steps=128)
    assert attr.shape == x.shape
    with torch.no_grad():
        baseline = x.flatten(1).amin(1).view(-1, 1, 1, 1).expand_as(x)
        change = (net(x) - net(baseline)).gather(1, target.view(-1, 1)).squeeze(1)
    total = attr.flatten(1).sum(1)
    assert torch.allclose(total, change, rtol=0.05, atol=0.02), (total, change)
    assert (attr[x == 0] == 0).all()  # a pixel at the baseline pushes nothing


def test_it_runs_under_inference_mode_as_in_a_test_epoch():
    net = SimpleCNN().eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        attr = integrated_gradients(net, x, torch.tensor([3, 5]), steps=8)
    assert attr.abs().sum() > 0


def _point_by_point(net, x, target, steps):
    """The definition, one point of the path at a time."""
    baseline = x.flatten(1).amin(1).view(-1, 1, 1, 1).expand_as(x)
    total = torch.zeros_like(x)
    for k in range(steps):
        point = (baseline + (k + 0.5) / steps * (x - baseline)).requires_grad_(True)
        (grad,) = torch.autograd.grad(net(point).gather(1, target.view(-1, 1)).sum(), point)
        total += grad
    return (x - baseline) * total / steps


@pytest.mark.parametrize("max_batch", [1024, 7, 1])  # every point in one pass; uneven chunks; one
@pytest.mark.parametrize("model", [SimpleCNN, SpeedCNN])
def test_the_path_in_batches_gives_the_point_by_point_attributions(model, max_batch, monkeypatch):
    monkeypatch.setattr("mnist_cnn.attribution.MAX_BATCH", max_batch)
    torch.manual_seed(len(model.__name__) + max_batch)
    net = model().eval()
    x = torch.rand(3, 1, 28, 28) * (torch.rand(3, 1, 28, 28) > 0.5)
    target = torch.randint(0, 10, (3,))
    want = _point_by_point(net, x, target, steps=10)
    got = integrated_gradients(net, x, target, steps=10)
    assert want.abs().sum() > 0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
