"""models.dropout.Dropout: torch's dropout, with the mask drawn by torch.rand where torch's CPU
bernoulli_ goes element by element (every CPU but Intel's with MKL)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mnist_cnn.models import dropout
from mnist_cnn.models.dropout import Dropout


@pytest.fixture
def serial(monkeypatch):
    """The path this process takes where torch draws masks one element at a time."""
    monkeypatch.setattr(dropout, "torch_draws_masks_serially", lambda: True)


def _inputs(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(64, 32, 12, 12), (128, 64, 4, 4), (128, 128), (7, 3, 5)]
    out = []
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            x = (torch.rand(shape, generator=g) * 4 + 0.25).to(dtype)  # never 0: a zero is a drop
            out.append(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_the_mask_keeps_1_minus_p_and_scales_as_torch_does(serial, seed):
    p = [0.1, 0.4, 0.75][seed]
    layer = Dropout(p).train()
    for x in _inputs(seed):
        x.requires_grad_()
        y = layer(x)
        assert y.dtype == x.dtype and y.shape == x.shape
        if x.dim() == 4:  # the next convolution gets the layout it expects
            assert y.is_contiguous(memory_format=torch.channels_last)
        kept = y != 0
        n = kept.numel()
        sd = math.sqrt(n * p * (1 - p))
        assert abs(kept.sum().item() - n * (1 - p)) < 5 * sd + 1, (p, x.shape)
        # torch's CPU dropout multiplies by a noise tensor of 1 / (1 - p) in the input's dtype
        scale = torch.ones((), dtype=x.dtype).div_(1 - p)
        assert torch.equal(y[kept], (x * scale)[kept].detach())
        y.backward(torch.ones_like(y))
        assert torch.equal(x.grad, torch.where(kept, scale, torch.zeros((), dtype=x.dtype)))


def test_the_same_seed_draws_the_same_mask_and_another_does_not(serial):
    x = torch.ones(256, 64)
    layer = Dropout(0.5).train()
    masks = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        masks.append(layer(x) != 0)
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_evaluation_and_the_edges_are_torchs(serial, p):
    x = _inputs(0)[0]
    assert torch.equal(Dropout(p).eval()(x), x)
    train = Dropout(p).train()(x)
    if p == 0.0:
        assert torch.equal(train, x)
    if p == 1.0:
        assert not train.any()


def test_where_torch_has_mkls_generator_it_is_torchs_dropout_bit_for_bit(monkeypatch):
    monkeypatch.setattr(dropout, "torch_draws_masks_serially", lambda: False)
    for x in _inputs(1):
        torch.manual_seed(9)
        ours = Dropout(0.4).train()(x)
        torch.manual_seed(9)
        assert torch.equal(ours, F.dropout(x, 0.4, True))


@pytest.mark.parametrize(
    "cpuinfo,serially",
    [("vendor_id\t: GenuineIntel\n", False), ("vendor_id\t: AuthenticAMD\n", True),
     ("vendor_id\t: HygonGenuine\nvendor_id\t: HygonGenuine\n", True), ("", False), (None, False)],
)  # fmt: skip
def test_the_serial_path_is_torchs_own_test_of_the_vendor(tmp_path, monkeypatch, cpuinfo, serially):
    if not torch.backends.mkl.is_available():
        pytest.skip("torch without MKL draws every CPU mask serially")
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:  # None: no such file (not Linux)
        path.write_text(f"processor\t: 0\n{cpuinfo}flags\t\t: fpu sse2\n")
    monkeypatch.setattr(dropout, "CPUINFO", path)
    dropout.torch_draws_masks_serially.cache_clear()
    try:
        assert dropout.torch_draws_masks_serially() is serially
    finally:
        dropout.torch_draws_masks_serially.cache_clear()
