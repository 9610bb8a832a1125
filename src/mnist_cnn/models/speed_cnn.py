"""The speedrun's network: two small conv stages, an optional hidden layer, a linear read-out.

conv(5x5), max-pool, batch norm, ReLU; conv(3x3), max-pool, batch norm, ReLU; [dense, ReLU];
linear. Pooling first makes batch norm and ReLU touch a quarter of the values (max-pool commutes
with ReLU, not with batch norm: this is its own network, trained that way). About 13,000
parameters, 106,000 with the speedrun's 8 first-layer filters and 128 hidden units: one epoch of
it at a high one-cycle learning rate reaches 99% (experiment=speedrun, docs/performance.md).
"""

from __future__ import annotations

import torch
from torch import nn

from mnist_cnn.models.init import conv_pool_side, initialise


def stage(cin: int, cout: int, kernel: int) -> nn.Sequential:
    # the convolution's bias is redundant before batch norm
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.ReLU()
    )


class SpeedCNN(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        conv1_channels: int = 16,
        conv2_channels: int = 32,
        hidden_units: int = 0,
        num_classes: int = 10,
        init: str = "torch",
    ) -> None:
        super().__init__()
        side = conv_pool_side(image_size, kernels=(5, 3))
        self.conv1 = stage(in_channels, conv1_channels, 5)
        self.conv2 = stage(conv1_channels, conv2_channels, 3)
        self.flatten = nn.Flatten()
        features = conv2_channels * side * side
        # 0: the pooled features go straight to the classes; N: through N ReLU units first
        self.hidden = (
            nn.Sequential(nn.Linear(features, hidden_units), nn.ReLU())
            if hidden_units
            else nn.Identity()
        )
        self.output = nn.Linear(hidden_units or features, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden(self.flatten(self.conv2(self.conv1(x)))))
