"""The Keras lab's layout made stronger: batch norm after every layer, dropout before the output.

conv(3x3)+BN+ReLU, pool, conv(3x3)+BN+ReLU, pool, dropout, dense+BN+ReLU, dropout, output.
About the Keras lab network's cost per step, so many more epochs fit into minutes on a CPU; pair it
with augmentation and a one-cycle schedule (experiment=bn_cnn).
"""

from __future__ import annotations

import torch
from torch import nn

from mnist_cnn.models.dropout import Dropout
from mnist_cnn.models.init import conv_pool_side, initialise


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    # the convolution's bias is redundant before batch norm; a strided conv pads to keep "same"
    padding = kernel // 2 if stride > 1 else 0
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class BatchNormCNN(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        conv1_channels: int = 32,
        conv2_channels: int = 64,
        dense_units: int = 256,
        dropout: float = 0.3,
        num_classes: int = 10,
        init: str = "torch",
    ) -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, conv1_channels)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = conv_bn(conv1_channels, conv2_channels)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        side = conv_pool_side(image_size)
        self.dropout1 = Dropout(dropout)
        self.dense1 = nn.Sequential(
            nn.Linear(conv2_channels * side * side, dense_units, bias=False),
            nn.BatchNorm1d(dense_units),
            nn.ReLU(),
        )
        self.dropout2 = Dropout(dropout)
        self.output = nn.Linear(dense_units, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        x = self.dense1(self.dropout1(self.flatten(x)))
        return self.output(self.dropout2(x))
