"""The networks: plain nn.Modules, one per file. MODELS lists those a checkpoint may rebuild."""

from __future__ import annotations

from torch import nn

from mnist_cnn.models.bn_cnn import BatchNormCNN
from mnist_cnn.models.deep_cnn import DeepCNN
from mnist_cnn.models.mlp import MLP
from mnist_cnn.models.simple_cnn import SimpleCNN
from mnist_cnn.models.speed_cnn import SpeedCNN

MODELS: dict[str, type[nn.Module]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (SimpleCNN, MLP, BatchNormCNN, SpeedCNN, DeepCNN)
}
