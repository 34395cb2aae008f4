"""Surrogate networks: a plain MLP on the flattened relaxed design, predicting the oracle score."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn


class Surrogate(nn.Module):
    """MLP regressor ``x ↦ score`` in the oracle's own units.

    The network learns standardised targets; ``target_mean`` and ``target_std`` (buffers, saved with the model)
    map its output back, so attacks, search and users all see scores in oracle units.

    Args:
        input_shape: shape of one encoded design.
        hidden: widths of the hidden layers.
        dropout: dropout after each hidden layer (0 disables it).
        seed: initialise the weights from this seed (torch's global generator is left as it was); ``None`` draws
            them from the global generator, which torch seeds differently in every process.
    """

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int] = (512, 256), dropout: float = 0.0,
                 seed: int | None = None) -> None:
        super().__init__()
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._build(input_shape, hidden, dropout)
        else:
            self._build(input_shape, hidden, dropout)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def _build(self, input_shape: Sequence[int], hidden: Sequence[int], dropout: float) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def set_target_scale(self, y: torch.Tensor) -> None:
        self.target_mean.fill_(float(y.mean()))
        self.target_std.fill_(float(y.std().clamp_min(1e-8)) if len(y) > 1 else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1) * self.target_std + self.target_mean


# -- serialisation: an architecture (JSON) and a state_dict (tensors only) -------------------------------------------
#
# A logged model is two files: ``architecture.json`` (which module to build, from an allow-list of types, with
# JSON arguments) and ``weights.pt`` (its ``state_dict``, read back with ``torch.load(weights_only=True)``), so
# loading a model never unpickles an object and never imports or runs code the artifact names.

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.pt"
ARCHITECTURE_FORMAT = "advdesign-torch-state-dict/1"


class UnsafeModelFile(ValueError):
    """The weights file is not a plain tensor file, or the architecture names something not on the allow-list."""


def _conv_args(m: nn.Conv2d) -> dict:
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
            "stride": list(m.stride), "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
            "bias": m.bias is not None}


def _standardize() -> type[nn.Module]:
    from tasks.classifiers import Standardize

    return Standardize


#: Module types a logged architecture may name: type name → (class factory, arguments of an instance).
_LEAVES: dict[str, tuple] = {
    "Linear": (lambda: nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                               "bias": m.bias is not None}),
    "Conv2d": (lambda: nn.Conv2d, _conv_args),
    "ReLU": (lambda: nn.ReLU, lambda m: {}),
    "SiLU": (lambda: nn.SiLU, lambda m: {}),
    "Tanh": (lambda: nn.Tanh, lambda m: {}),
    "Identity": (lambda: nn.Identity, lambda m: {}),
    "Flatten": (lambda: nn.Flatten, lambda m: {"start_dim": m.start_dim, "end_dim": m.end_dim}),
    "Dropout": (lambda: nn.Dropout, lambda m: {"p": m.p}),
    "MaxPool2d": (lambda: nn.MaxPool2d, lambda m: {"kernel_size": m.kernel_size, "stride": m.stride,
                                                     "padding": m.padding}),
    "Standardize": (_standardize, lambda m: {"mean": float(m.mean), "std": float(m.std)}),
    "Surrogate": (lambda: Surrogate, lambda m: {"input_shape": list(m.input_shape), "hidden": list(m.hidden),
                                                "dropout": m.dropout}),
}
#: Parameter-free modules registered by name with :func:`register_architecture` (e.g. test doubles).
_REGISTERED: dict[str, type[nn.Module]] = {}


def register_architecture(cls: type[nn.Module]) -> type[nn.Module]:
    """Allow a module class whose constructor takes no arguments to be logged and loaded (by class name)."""
    _REGISTERED[cls.__name__] = cls
    return cls


def architecture(model: nn.Module) -> dict:
    """The JSON description of ``model``; ``ValueError`` for a module type not on the allow-list."""
    kind = type(model).__name__
    if type(model) is nn.Sequential:
        return {"type": "Sequential", "children": [architecture(child) for child in model]}
    if kind in _LEAVES and type(model) is _LEAVES[kind][0]():
        return {"type": kind, "args": _LEAVES[kind][1](model)}
    if _REGISTERED.get(kind) is type(model):
        return {"type": kind, "args": {}}
    raise ValueError(f"cannot log a {kind}: only {', '.join(sorted(_LEAVES))}, Sequential and registered modules "
                     "(tasks.surrogate.register_architecture) are saved as architecture + weights")


def build(spec: dict) -> nn.Module:
    """The module ``spec`` describes, built from the allow-list only (its weights freshly initialised)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise UnsafeModelFile(f"{ARCHITECTURE_FILE}: not an architecture description")
    kind = spec["type"]
    if kind == "Sequential":
        return nn.Sequential(*(build(child) for child in spec.get("children", [])))
    args = spec.get("args", {})
    if not isinstance(args, dict):
        raise UnsafeModelFile(f"{ARCHITECTURE_FILE}: arguments of {kind} are not a mapping")
    if kind in _LEAVES:
        return _LEAVES[kind][0]()(**args)
    if kind in _REGISTERED and not args:
        return _REGISTERED[kind]()
    raise UnsafeModelFile(f"{ARCHITECTURE_FILE}: module type {kind!r} is not on the allow-list")


def save_model(model: nn.Module, folder: str | Path) -> dict:
    """Write ``architecture.json`` and ``weights.pt`` into ``folder``; returns the architecture description."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"format": ARCHITECTURE_FORMAT, "module": architecture(model)}
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(spec, indent=1))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    return spec


def load_saved_model(folder: str | Path) -> nn.Module:
    """Build the model in ``folder`` and load its weights as tensors only (``torch.load(weights_only=True)``).

    Raises :class:`UnsafeModelFile` (one line) for a weights file that is anything but tensors — a crafted pickle
    is refused before any of its code runs — and ``FileNotFoundError`` when a file is missing."""
    folder = Path(folder)
    try:
        spec = json.loads((folder / ARCHITECTURE_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise UnsafeModelFile(f"{ARCHITECTURE_FILE} is not JSON: {exc}") from None
    if not isinstance(spec, dict) or spec.get("format") != ARCHITECTURE_FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else spec
        raise UnsafeModelFile(f"{ARCHITECTURE_FILE}: unknown format {found!r}")
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG as it was
        model = build(spec["module"])
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning: the error below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError: all mean "not a plain tensor file"
        raise UnsafeModelFile(f"{WEIGHTS_FILE} is not a plain tensor file, refused to load it "
                              f"({_refusal(exc)}); nothing in it was run") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnsafeModelFile(f"{WEIGHTS_FILE} does not hold a state_dict of tensors")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UnsafeModelFile(f"{WEIGHTS_FILE} does not match {ARCHITECTURE_FILE}: {first}") from None
    return model.eval()


def _refusal(exc: Exception) -> str:
    """The reason in torch's weights-only error (not its advice to retry with ``weights_only=False``)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].strip()
        reason = reason.split("\n\n")[0].split("Check the documentation")[0].strip()
        return "weights-only unpickler: " + " ".join(reason.split())[:200]
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def fingerprint(model: nn.Module) -> str:
    """SHA-256 of the architecture and every weight: equal for the same trained model, whatever run logs it."""
    digest = hashlib.sha256(json.dumps(architecture(model), sort_keys=True).encode())
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
