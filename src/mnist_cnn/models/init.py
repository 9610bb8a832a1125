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


def conv_pool_side(image_size: int, kernels: tuple[int, ...] = (3, 3)) -> int:
    """Side of the feature map after one valid convolution per kernel size, each with a 2x2
    max-pool."""
    side = image_size
    for kernel in kernels:
        side = (side - kernel + 1) // 2
    if side < 1:
        raise ValueError(
            f"image_size={image_size} is too small for {len(kernels)} conv+pool stages"
        )
    return side


def read_side(image_size: int, kernels: tuple[int, ...] = (3, 3)) -> int:
    """Side of the input's top-left square that a conv+pool stack (as in conv_pool_side) reads.

    A 2x2 max-pool drops an odd last row and column, so the pixels below and right of this
    square reach no output: they get a zero gradient, and leaving them out changes nothing."""
    side = conv_pool_side(image_size, kernels)
    for kernel in reversed(kernels):
        side = 2 * side + kernel - 1
    return side
