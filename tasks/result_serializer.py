"""Prefect results stored as data, never as pickles (issue 16): the cached oracle labels and trained surrogates.

Prefect persists a task's result (``persist_result``) with the task's ``result_serializer``, ``pickle`` unless told
otherwise, and reads a stored record back with the serializer the record itself names. A pickle from a shared
result store runs code on whoever reads it. :class:`DataSerializer` (type ``advdesign-data``) writes JSON in which
arrays and tensors are ``.npy`` bytes (``numpy.save(allow_pickle=False)``, base64) and models are their
architecture description plus a state_dict of tensors, exactly like the model store (:mod:`tasks.surrogate`). Reading
builds only what an allow-list names: plain JSON values, arrays of numeric dtypes, the dataclasses in
:data:`DATACLASSES` and the modules :func:`tasks.surrogate.build` accepts. Anything else is refused in one line.

Prefect reads a record with the serializer the record's metadata names, so a record rewritten to name ``pickle``
would still be unpickled. Importing this module guards that door: while a store whose serializer is a
:class:`DataSerializer` reads (our data tasks' cache hits), Prefect's pickle and JSON serializers refuse.
``ADVDESIGN_REFUSE_PICKLED_RESULTS=1`` (or :func:`refuse_pickled_results`) refuses every pickled result in the
process, not only those.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import functools
import inspect
import io
import json
import math
import os
from pathlib import Path, PurePath
from typing import Any, Literal

import numpy as np
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer, PickleSerializer, Serializer

#: The format tag written into every payload; a payload without it is refused.
FORMAT = "advdesign-data/1"


class UnsafeResult(ValueError):
    """A stored Prefect result that is not plain data (or names a type off the allow-list); nothing was run."""


def _dataclasses() -> dict[str, type]:
    from designers.base import OracleResult
    from tasks.training import Defense, EpochRecord, TrainingConfig, TrainingHistory

    return {cls.__name__: cls for cls in (OracleResult, TrainingHistory, EpochRecord, TrainingConfig, Defense)}


#: Dataclasses a result may hold, by name (filled on first use: importing them pulls in torch).
DATACLASSES: dict[str, type] = {}


def _allowed_dataclasses() -> dict[str, type]:
    if not DATACLASSES:
        DATACLASSES.update(_dataclasses())
    return DATACLASSES


def _array_bytes(array: np.ndarray) -> str:
    if array.dtype.hasobject:
        raise TypeError(f"an array of dtype {array.dtype} (objects) is not data; store strings or numbers")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _array_from(text: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
    except ValueError as exc:
        raise UnsafeResult(f"stored array refused: {str(exc).splitlines()[0]}") from None


def encode(value: Any) -> Any:
    """``value`` as JSON-able data with tagged nodes (``{"__array__": …}``, ``{"__module__": …}``, …)."""
    import torch
    from torch import nn

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return {"__array__": _array_bytes(value)}
    if isinstance(value, torch.Tensor):
        return {"__tensor__": _array_bytes(value.detach().cpu().numpy())}
    if isinstance(value, nn.Module):
        return {"__module__": _module(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, PurePath):
        return {"__path__": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _allowed_dataclasses().get(name) is not type(value):
            raise TypeError(f"{type(value).__qualname__} is not on the result allow-list "
                            "(tasks.result_serializer.DATACLASSES)")
        return {"__dataclass__": name,
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"a {type(value).__qualname__} cannot be stored as data (tasks.result_serializer)")


def _module(model: Any) -> dict:
    from tasks.ensemble import Ensemble
    from tasks.surrogate import architecture

    if type(model) is Ensemble:
        return {"ensemble": [_module(member) for member in model.members], "training": model.training}
    state = {name: _array_bytes(tensor.detach().cpu().numpy()) for name, tensor in model.state_dict().items()}
    return {"architecture": architecture(model), "state": state, "training": model.training}


def _build_module(spec: Any) -> Any:
    import torch

    from tasks.ensemble import Ensemble
    from tasks.surrogate import UnsafeModelFile, build

    if not isinstance(spec, dict):
        raise UnsafeResult("stored model refused: not a description")
    if "ensemble" in spec:
        model = Ensemble([_build_module(member) for member in spec["ensemble"]])
    else:
        try:
            with torch.random.fork_rng(devices=[]):
                model = build(spec.get("architecture"))
        except UnsafeModelFile as exc:
            raise UnsafeResult(f"stored model refused: {exc}") from None
        state = spec.get("state")
        if not isinstance(state, dict):
            raise UnsafeResult("stored model refused: no state_dict")
        try:
            model.load_state_dict({k: torch.from_numpy(_array_from(v)) for k, v in state.items()}, strict=True)
        except RuntimeError as exc:
            raise UnsafeResult(f"stored model refused: {str(exc).splitlines()[0]}") from None
    return model.train(bool(spec.get("training", False)))


def decode(node: Any) -> Any:
    """The value :func:`encode` wrote; only allow-listed types are built."""
    import torch

    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [decode(v) for v in node]
    if not isinstance(node, dict) or len(node) not in (1, 2):
        raise UnsafeResult(f"stored result refused: unexpected node {str(node)[:60]!r}")
    if "__float__" in node:
        if node["__float__"] not in ("nan", "inf", "-inf"):
            raise UnsafeResult("stored result refused: bad float")
        return float(node["__float__"])
    if "__array__" in node:
        return _array_from(node["__array__"])
    if "__tensor__" in node:
        return torch.from_numpy(_array_from(node["__tensor__"]).copy())
    if "__module__" in node:
        return _build_module(node["__module__"])
    if "__tuple__" in node:
        return tuple(decode(v) for v in node["__tuple__"])
    if "__dict__" in node:
        return {_hashable(decode(k)): decode(v) for k, v in node["__dict__"]}
    if "__path__" in node:
        if not isinstance(node["__path__"], str):
            raise UnsafeResult("stored result refused: bad path")
        return Path(node["__path__"])
    if "__dataclass__" in node:
        cls = _allowed_dataclasses().get(node["__dataclass__"])
        if cls is None:
            raise UnsafeResult(f"stored result refused: type {str(node['__dataclass__'])[:60]!r} is not on the "
                               "allow-list")
        fields = node.get("fields")
        if not isinstance(fields, dict):
            raise UnsafeResult("stored result refused: dataclass without fields")
        return cls(**{name: decode(v) for name, v in fields.items()})
    raise UnsafeResult(f"stored result refused: unknown tag {next(iter(node))[:40]!r}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


class DataSerializer(Serializer):
    """Prefect serializer of plain data (see the module's docstring); ``result_serializer=DataSerializer()``."""

    type: Literal["advdesign-data"] = "advdesign-data"

    def dumps(self, obj: Any) -> bytes:
        return json.dumps({"format": FORMAT, "value": encode(obj)}, separators=(",", ":")).encode()

    def loads(self, blob: bytes) -> Any:
        try:
            payload = json.loads(blob)
        except (ValueError, UnicodeDecodeError):
            raise UnsafeResult("stored result refused: not JSON data (a pickle?); nothing in it was run") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise UnsafeResult(f"stored result refused: not {FORMAT}")
        return decode(payload["value"])


#: The serializer the data-carrying tasks (oracle labels, trained surrogates) persist their results with.
DATA_SERIALIZER = DataSerializer()

# -- reading: a data task's record is read with DataSerializer or not at all ----------------------------------------
#: Set while a result store whose serializer is a DataSerializer reads a record (see _guard_store_reads).
_READING_DATA = contextvars.ContextVar("advdesign_reading_data_result", default=False)
_REFUSE_ALL_PICKLES = False
_ORIGINAL_PICKLE_LOADS = PickleSerializer.loads
_ORIGINAL_JSON_LOADS = JSONSerializer.loads


def _guarded_pickle_loads(self: PickleSerializer, blob: bytes) -> Any:
    if _READING_DATA.get():
        raise UnsafeResult("refused a stored Prefect result of a data task that names the pickle serializer (a "
                           "tampered or foreign record); nothing in it was run. Delete it from the result storage")
    if _REFUSE_ALL_PICKLES:
        raise UnsafeResult("refused to unpickle a stored Prefect result (ADVDESIGN_REFUSE_PICKLED_RESULTS is set): "
                           "a pickle runs code; this project's results are stored as data (tasks.result_serializer)")
    return _ORIGINAL_PICKLE_LOADS(self, blob)


def _guarded_json_loads(self: JSONSerializer, blob: bytes) -> Any:
    if _READING_DATA.get():  # Prefect's JSON decoder imports and builds any class a record names
        raise UnsafeResult("refused a stored Prefect result of a data task that names another serializer (json); "
                           "nothing in it was built. Delete it from the result storage")
    return _ORIGINAL_JSON_LOADS(self, blob)


def _guard_store_reads() -> None:
    """Prefect reads a record with the serializer its metadata names, whatever the task's own. While a store
    configured with a :class:`DataSerializer` (our data tasks) reads, any other serializer is refused, so a record
    rewritten to say ``pickle`` runs nothing."""
    if getattr(ResultStore.read, "_advdesign_guard", False):
        return

    def guarded(method: Any) -> Any:
        if inspect.iscoroutinefunction(method):
            async def guarded_async(self: ResultStore, *args: Any, **kwargs: Any) -> Any:
                token = _READING_DATA.set(isinstance(self.serializer, DataSerializer))
                try:
                    return await method(self, *args, **kwargs)
                finally:
                    _READING_DATA.reset(token)
            wrapper = guarded_async
        else:
            def guarded_sync(self: ResultStore, *args: Any, **kwargs: Any) -> Any:
                token = _READING_DATA.set(isinstance(self.serializer, DataSerializer))
                try:
                    return method(self, *args, **kwargs)
                finally:
                    _READING_DATA.reset(token)
            wrapper = guarded_sync
        wrapper._advdesign_guard = True  # type: ignore[attr-defined]
        return functools.wraps(method)(wrapper)

    # exists() deserializes the record too (to read its expiration), before read() is ever called.
    for name in ("read", "aread", "exists", "aexists"):
        setattr(ResultStore, name, guarded(getattr(ResultStore, name)))
    PickleSerializer.loads = _guarded_pickle_loads  # type: ignore[method-assign]
    JSONSerializer.loads = _guarded_json_loads  # type: ignore[method-assign]


def refuse_pickled_results(refuse: bool = True) -> None:
    """Make this process refuse (or, ``False``, allow again) every pickled Prefect result it is asked to read, not
    only those of the data tasks (``ADVDESIGN_REFUSE_PICKLED_RESULTS=1`` does this at import)."""
    global _REFUSE_ALL_PICKLES
    _REFUSE_ALL_PICKLES = refuse


_guard_store_reads()
if os.environ.get("ADVDESIGN_REFUSE_PICKLED_RESULTS", "").lower() in ("1", "true", "yes"):
    refuse_pickled_results()
