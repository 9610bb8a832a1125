"""The Keras lab's network, layer for layer: conv32-conv64-dense128 (225,034 parameters)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mnist_cnn.models.init import conv_pool_side, initialise, read_side


class SimpleCNN(nn.Module):
    """conv1(3x3)+ReLU, pool1, conv2(3x3)+ReLU, pool2, flatten, dense1+ReLU, output -> logits."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        conv1_channels: int = 32,
        conv2_channels: int = 64,
        dense_units: int = 128,
        num_classes: int = 10,
        init: str = "keras",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, conv1_channels, kernel_size=3)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(conv1_channels, conv2_channels, kernel_size=3)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        side = conv_pool_side(image_size)
        self.image_size = image_size
        self.read_side = read_side(image_size)
        self.dense1 = nn.Linear(conv2_channels * side * side, dense_units)
        self.output = nn.Linear(dense_units, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # On 28x28 images pool2 drops conv2's last row and column (11 -> 5), so the network reads
        # only the top-left 26x26 pixels: convolving that square alone gives the same logits, bit
        # for bit, and the same gradients up to a sum's rounding, without the convolution work
        # that no output uses.
        if x.shape[-2:] != (self.image_size, self.image_size):  # the crop would hide a mismatch
            raise ValueError(
                f"SimpleCNN(image_size={self.image_size}) got images of "
                f"{x.shape[-2]}x{x.shape[-1]}: build the network for the data's image size"
            )
        x = x[..., : self.read_side, : self.read_side]
        # max-pool and ReLU commute (both monotone; a window's max is <= 0 exactly when all of it
        # is), so pooling first gives the same outputs and the same gradients, bit for bit, while
        # ReLU and its backward touch a quarter of the values (docs/performance.md).
        x = F.relu(self.pool1(self.conv1(x)))
        x = F.relu(self.pool2(self.conv2(x)))
        x = F.relu(self.dense1(self.flatten(x)))
        return self.output(x)  # logits: cross-entropy applies the Keras lab's softmax
