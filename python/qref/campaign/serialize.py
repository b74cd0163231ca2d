"""Shipping a campaign's payload (a kernel function, a quantized model) to worker processes.

cloudpickle when it is installed (it comes with Ray), so lambdas and closures travel too;
plain pickle otherwise. torch's quantized conv modules define ``__getstate__`` /
``__setstate__`` that restore only the conv's own fields, not ``torch.nn.Module``'s
internals (hooks, buffers dicts): a plainly unpickled quantized Conv2d cannot even be called
(torch 2.13). Those modules travel as (class, their own state, the rest of ``__dict__``) and are
rebuilt the way their ``__deepcopy__`` does it (``Module.__init__`` then ``__setstate__``), so
forward hooks and attributes survive. The weights are repacked on arrival under the quantized
engine the driver used (``torch.backends.quantized.engine`` is set first).
"""

from __future__ import annotations

import io
import pickle
import sys
from typing import Any

try:  # cloudpickle comes with Ray: lambdas and closures travel by value
    import cloudpickle
except ImportError:  # plain pickle: module-level functions only
    cloudpickle = None


def _rebuild_module(cls: type, state: Any, extra: dict) -> Any:
    import torch

    obj = cls.__new__(cls)
    torch.nn.Module.__init__(obj)
    obj.__dict__.update(extra)
    obj.__setstate__(state)
    return obj


def _is_script_object(v: Any) -> bool:
    return type(v).__name__ == "ScriptObject"


def _pickler_class() -> type:
    """cloudpickle's pickler when installed, else pickle's; plus the quantized-module rule."""
    base: Any = cloudpickle.CloudPickler if cloudpickle is not None else pickle.Pickler

    class Pickler(base):  # type: ignore[misc, valid-type]
        def reducer_override(self, obj: Any) -> Any:
            torch = sys.modules.get("torch")
            if torch is not None and isinstance(obj, torch.nn.Module):
                cls = type(obj)
                own = getattr(cls, "__getstate__", None)
                if own is not None and own is not getattr(torch.nn.Module, "__getstate__", None):
                    state = obj.__getstate__()
                    if isinstance(state, tuple):  # the quantized modules' tuple state
                        extra = {k: v for k, v in obj.__dict__.items() if not _is_script_object(v)}
                        return _rebuild_module, (cls, state, extra)
            parent = getattr(super(), "reducer_override", None)
            return parent(obj) if parent is not None else NotImplemented

    return Pickler


def dumps(obj: Any) -> bytes:
    """``obj`` as bytes (the quantized-module rule above), with the quantized engine of this
    process, so that ``loads`` packs the weights for the same engine."""
    torch = sys.modules.get("torch")
    engine = torch.backends.quantized.engine if torch is not None else None
    buf = io.BytesIO()
    _pickler_class()(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return pickle.dumps((engine, buf.getvalue()), protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    """The object ``dumps`` wrote: the engine is set first (a torch model's weights are
    repacked while it is unpickled), then the object is read."""
    engine, blob = pickle.loads(data)
    if engine is not None:
        import torch

        if torch.backends.quantized.engine != engine:
            torch.backends.quantized.engine = engine
    return pickle.loads(blob)
