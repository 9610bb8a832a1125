"""SimpleCNN mirrors the Keras lab's network layer for layer; ClassifierModule trains it."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from helpers.runs import quiet_trainer

from mnist_cnn.data.mnist import MNISTDataModule
from mnist_cnn.models.bn_cnn import BatchNormCNN
from mnist_cnn.models.deep_cnn import DeepCNN
from mnist_cnn.models.mlp import MLP
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.models.speed_cnn import SpeedCNN
from mnist_cnn.module import ClassifierModule


def test_seed_architecture_has_225034_parameters_and_its_layer_names():
    net = SimpleCNN()
    assert sum(p.numel() for p in net.parameters()) == 225_034
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters() if name.endswith("weight")}
    assert shapes == {
        "conv1.weight": (32, 1, 3, 3),
        "conv2.weight": (64, 32, 3, 3),
        "dense1.weight": (128, 1600),
        "output.weight": (10, 128),
    }
    assert [n for n, _ in net.named_children()] == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "flatten",
        "dense1",
        "output",
    ]


def test_outputs_logits_per_class():
    out = SimpleCNN()(torch.rand(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert not torch.allclose(out.softmax(1).sum(1), out.sum(1))  # logits, not probabilities


@pytest.mark.parametrize("side", [26, 27, 29, 32])
def test_images_of_another_size_are_refused_not_cropped_silently(side):
    with pytest.raises(ValueError, match=rf"image_size=28\) got images of {side}x{side}: build"):
        SimpleCNN()(torch.rand(2, 1, side, side))
    assert SimpleCNN(image_size=side)(torch.rand(2, 1, side, side)).shape == (2, 10)


def test_keras_initialisation_mirrors_the_seed():
    torch.manual_seed(0)
    net = SimpleCNN()  # Glorot-uniform kernels, zero biases
    assert all(not m.bias.any() for m in (net.conv1, net.conv2, net.dense1, net.output))
    limit = (6 / (1600 + 128)) ** 0.5
    assert net.dense1.weight.abs().max() <= limit and net.dense1.weight.abs().max() > 0.9 * limit
    assert SimpleCNN(init="torch").conv1.bias.any()
    with pytest.raises(ValueError, match="init='he'"):
        SimpleCNN(init="he")


def test_sizes_are_configurable():
    net = SimpleCNN(conv1_channels=8, conv2_channels=16, dense_units=32, num_classes=5)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    assert net.dense1.in_features == 16 * 5 * 5


def test_training_steps_lower_the_loss(tiny_data_dir):
    torch.manual_seed(0)
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=64)
    dm.prepare_data()
    dm.setup("fit")
    module = ClassifierModule(SimpleCNN(), functools.partial(torch.optim.Adam, lr=1e-3))
    optimizer = module.configure_optimizers()
    x, y = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    before = torch.nn.functional.cross_entropy(module(x), y).item()
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()
    assert torch.nn.functional.cross_entropy(module(x), y).item() < before / 2


def test_fit_and_test_report_consistent_metrics(tiny_data_dir, tmp_path):
    L.seed_everything(0)
    dm = MNISTDataModule(data_dir=tiny_data_dir, download=False, batch_size=32, eval_batch_size=64)
    module = ClassifierModule(
        SimpleCNN(), functools.partial(torch.optim.Adam, lr=3e-3), config={"seed": 0}
    )
    trainer = quiet_trainer(tmp_path, max_epochs=2)
    trainer.fit(module, datamodule=dm)
    assert trainer.callback_metrics["val/acc"] > 0.9  # the generated digits are easy
    result = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert result["test/total"] == 200
    assert result["test/correct"] == round(result["test/acc"] * 200)
    limited = quiet_trainer(tmp_path, limit_test_batches=2)
    assert limited.test(module, datamodule=dm, verbose=False)[0]["test/total"] == 128
    assert module.hparams == {"num_classes": 10, "seed": 0}


def test_mlp_is_the_lab4_dense_baseline():
    net = MLP()
    assert sum(p.numel() for p in net.parameters()) == 101_770  # 784*128+128 + 128*10+10
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    wide = MLP(hidden=[256, 64], dropout=0.2, num_classes=5)
    assert wide(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    assert [type(m).__name__ for m in wide.hidden] == [
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
    ]


def test_speed_cnn_shapes_and_its_optional_hidden_layer():
    net = SpeedCNN()
    # conv 16x1x5x5, BN 2x16, conv 32x16x3x3, BN 2x32, linear 800x10+10
    assert sum(p.numel() for p in net.parameters()) == 400 + 32 + 4608 + 64 + 8010
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    hidden = SpeedCNN(hidden_units=64, num_classes=5)
    assert hidden(torch.rand(2, 1, 28, 28)).shape == (2, 5)
    assert hidden.hidden[0].out_features == 64 and hidden.output.in_features == 64
    with pytest.raises(ValueError, match="image_size=9 is too small"):
        SpeedCNN(image_size=9)


def test_deep_cnn_is_the_anchors_layout_and_learns():
    net = DeepCNN()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 3, 1), (32, 3, 1), (32, 5, 2), (64, 3, 1), (64, 3, 1), (64, 5, 2), (128, 4, 1),
    ]  # fmt: skip
    assert all(c.bias is None for c in convs)  # batch norm follows each
    # 7 convolutions, 7 batch norms (2 values a channel), the 128x10 read-out
    conv_weights = 9 * 32 + 9 * 32 * 32 + 25 * 32 * 32 + 9 * 32 * 64 + 9 * 64 * 64 + 25 * 64 * 64
    norms = 2 * (3 * 32 + 3 * 64 + 128)
    assert sum(p.numel() for p in net.parameters()) == conv_weights + 16 * 64 * 128 + norms + 1290
    # the last convolution spans whatever map is left, for any size the stages allow
    for size in (13, 20, 28, 32):
        assert DeepCNN(image_size=size, num_classes=5)(torch.rand(2, 1, size, size)).shape == (2, 5)
    with pytest.raises(ValueError, match="image_size=12 is too small"):
        DeepCNN(image_size=12)
    torch.manual_seed(0)  # it fits one batch (batch statistics, no dropout: no noise but the data)
    net, x, y = DeepCNN(dropout=0.0), torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = F.cross_entropy(net(x), y).item()
    for _ in range(15):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    assert F.cross_entropy(net(x), y).item() < before / 2


def test_batchnorm_cnn_shapes_and_parameters():
    net = BatchNormCNN()
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) == 431_594
    assert isinstance(net.conv1[1], torch.nn.BatchNorm2d) and net.conv1[0].bias is None
