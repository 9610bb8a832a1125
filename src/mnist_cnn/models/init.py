"""What the networks share: Keras' initialisation and the size a conv+pool stack leaves."""

from __future__ import annotations

from torch import nn


def keras_init(module: nn.Module) -> None:
    """Keras' defaults, as in the Keras lab: Glorot-uniform kernels and zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def initialise(net: nn.Module, init: str) -> None:
    """init='keras' (the Keras lab's) re-initialises every layer; 'torch' keeps PyTorch's."""
    if init == "keras":
        net.apply(keras_init)
    elif init != "torch":
        raise ValueError(f"init={init!r}: expected 'keras' (the Keras lab's) or 'torch'")


def conv_pool_side(image_size: int, stages: int = 2) -> int:
    """Side of the feature map after `stages` valid 3x3 convolutions, each with a 2x2 max-pool."""
    side = image_size
    for _ in range(stages):
        side = (side - 2) // 2
    if side < 1:
        raise ValueError(f"image_size={image_size} is too small for {stages} conv+pool stages")
    return side
