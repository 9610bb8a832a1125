"""The frontier anchor's network (cdeotte/MNIST-CNN-99.75), in PyTorch.

Two stages, each conv(3x3)+BN+ReLU, conv(3x3)+BN+ReLU, then conv(5x5, stride 2, same padding)
+BN+ReLU and dropout: the strided 5x5 learns its own down-sampling where the other networks
max-pool. Then one convolution over the whole remaining map (128 channels, BN, ReLU), dropout and
a linear read-out. Deeper and costlier per digit than BatchNormCNN with fewer parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from mnist_cnn.models.bn_cnn import conv_bn
from mnist_cnn.models.dropout import Dropout
from mnist_cnn.models.init import initialise


def stage_side(side: int) -> int:
    """The side after one stage: two valid 3x3 convolutions, then the strided 5x5."""
    return (side - 4 + 2 * 2 - 5) // 2 + 1


class DeepCNN(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        conv1_channels: int = 32,
        conv2_channels: int = 64,
        head_channels: int = 128,
        dropout: float = 0.4,
        num_classes: int = 10,
        init: str = "torch",
    ) -> None:
        super().__init__()
        side = stage_side(stage_side(image_size))
        if image_size - 4 < 1 or stage_side(image_size) - 4 < 1 or side < 1:
            raise ValueError(
                f"image_size={image_size} is too small for DeepCNN's two stages of two 3x3 "
                "convolutions and a strided 5x5 (28, MNIST's, leaves a 4x4 map)"
            )
        self.stage1 = nn.Sequential(
            conv_bn(in_channels, conv1_channels, 3),
            conv_bn(conv1_channels, conv1_channels, 3),
            conv_bn(conv1_channels, conv1_channels, 5, stride=2),
            Dropout(dropout),
        )
        self.stage2 = nn.Sequential(
            conv_bn(conv1_channels, conv2_channels, 3),
            conv_bn(conv2_channels, conv2_channels, 3),
            conv_bn(conv2_channels, conv2_channels, 5, stride=2),
            Dropout(dropout),
        )
        # a kernel the size of the map: one value per channel, wherever the digit's features are
        self.head = conv_bn(conv2_channels, head_channels, side)
        self.flatten = nn.Flatten()
        self.dropout = Dropout(dropout)
        self.output = nn.Linear(head_channels, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stage2(self.stage1(x)))
        return self.output(self.dropout(self.flatten(x)))
