"""The Lab 4 baseline: a dense network on flattened pixels (784-128-10: 101,770 parameters)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnist_cnn.models.dropout import Dropout
from mnist_cnn.models.init import initialise


class MLP(nn.Module):
    """flatten, then Linear+ReLU(+dropout) per hidden size, then output -> logits."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        num_classes: int = 10,
        init: str = "keras",
    ) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        width = in_channels * image_size * image_size
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout:
                layers.append(Dropout(dropout))
            width = units
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.hidden(self.flatten(x)))
