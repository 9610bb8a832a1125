"""What the project knows of each MNIST-style dataset: its class names and pixel statistics."""

from __future__ import annotations

from mnist_cnn.errors import UserError

# mean and standard deviation of the training pixels scaled to [0, 1] (data.normalize=true)
MEAN_STD = {"MNIST": (0.1307, 0.3081), "FashionMNIST": (0.2860, 0.3530)}


def dataset_class(dataset: str) -> type:
    """The torchvision class that names the dataset's folder and classes."""
    from torchvision import datasets

    cls = getattr(datasets, dataset, None)
    if cls is None or not hasattr(cls, "classes"):
        raise UserError(f"data.dataset={dataset!r} is not a torchvision MNIST-style dataset")
    return cls


def class_names(dataset: str) -> list[str]:
    """Short class names ('0'..'9', 'T-shirt/top', ...) as figures and predictions show them."""
    return [c.split(" - ")[0] for c in dataset_class(dataset).classes]


def mean_std(dataset: str, normalize: bool) -> tuple[float | None, float | None]:
    """(mean, std) to standardise with, or (None, None) for plain [0, 1] pixels."""
    return MEAN_STD.get(dataset, (None, None)) if normalize else (None, None)
