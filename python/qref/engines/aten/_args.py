"""Argument checks of qref.engines.aten: ``<function>: <argument>=<value> <what is wrong> (<rule>)``."""

from __future__ import annotations

import math
import numbers
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)
MAX_ELEMENTS = 1 << 40

CAPABILITIES = {"default": 0, "avx2": 1, "avx512": 2}
DTYPES = ("quint8", "qint8")


@dataclass(frozen=True)
class QTensor:
    """A per-tensor quantized array without torch: ``data`` (uint8 for quint8, int8 for qint8),
    ``scale`` and ``zero_point``; its real value is ``scale * (data - zero_point)``."""

    data: np.ndarray
    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        fn = "QTensor"
        if not isinstance(self.data, np.ndarray):
            raise TypeError(f"{fn}: data has type {type(self.data).__name__} (must be a numpy array)")
        if self.data.dtype not in (np.uint8, np.int8):
            raise TypeError(f"{fn}: data has dtype {self.data.dtype} (must be uint8 for quint8 or int8 for qint8)")
        object.__setattr__(self, "scale", check_scale(fn, "scale", self.scale))
        object.__setattr__(self, "zero_point", check_zero_point(fn, "zero_point", self.zero_point, self.dtype))

    @property
    def dtype(self) -> str:
        return "qint8" if self.data.dtype == np.int8 else "quint8"


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "is_quantized")


def check_int(fn: str, name: str, v: Any, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{fn}: {name}={v!r} has type {type(v).__name__} (must be an int)")
    iv = int(v)
    if (lo is not None and iv < lo) or (hi is not None and iv > hi):
        raise ValueError(f"{fn}: {name}={iv} is out of range (must be in "
                         f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}])")
    return iv


def check_float(fn: str, name: str, v: Any, finite: bool = True) -> float:
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "fiu":
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name}={v!r} has type {type(v).__name__} (must be a real number)")
    f = float(v)
    if finite and not math.isfinite(f):
        raise ValueError(f"{fn}: {name}={f!r} is not finite (must be a finite number)")
    return f


def check_scale(fn: str, name: str, v: Any) -> float:
    f = check_float(fn, name, v, finite=False)
    if not (math.isfinite(f) and _F32_TINY <= f <= _F32_MAX):
        raise ValueError(f"{fn}: {name}={f!r} is not a valid scale (must be a finite normal float32 > 0)")
    return f


def zp_range(dtype: str) -> tuple[int, int]:
    return (-128, 127) if dtype == "qint8" else (0, 255)


def check_zero_point(fn: str, name: str, v: Any, dtype: str) -> int:
    lo, hi = zp_range(dtype)
    return check_int(fn, name, v, lo, hi)


def check_bool(fn: str, name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name}={v!r} has type {type(v).__name__} (must be a bool)")
    return bool(v)


def check_dtype(fn: str, name: str, v: Any) -> str:
    s = v if isinstance(v, str) else str(v).replace("torch.", "")
    if s not in DTYPES:
        raise ValueError(f"{fn}: {name}={v!r} is not supported (must be 'quint8' or 'qint8', or torch.quint8 / torch.qint8)")
    return s


def check_capability(fn: str, v: Any) -> int:
    """The ATen CPU capability whose arithmetic to reproduce. None: the one torch picked in this
    process when torch is imported, else ATEN_CPU_CAPABILITY, else what this CPU would get."""
    if v is None:
        torch = sys.modules.get("torch")
        if torch is not None:
            v = torch.backends.cpu.get_cpu_capability()
        else:
            v = os.environ.get("ATEN_CPU_CAPABILITY") or _detect_capability()
    if not isinstance(v, str):
        raise TypeError(f"{fn}: capability={v!r} has type {type(v).__name__} (must be 'default', 'avx2' or 'avx512')")
    key = v.lower()
    if key not in CAPABILITIES:
        raise ValueError(f"{fn}: capability={v!r} is not supported (must be 'default', 'avx2' or 'avx512')")
    return CAPABILITIES[key]


def _detect_capability() -> str:
    from ... import _core

    f = _core.cpu_features()
    if f.get("avx512f") and f.get("avx512bw") and f.get("avx512dq") and f.get("avx512vl") and f.get("fma"):
        return "avx512"
    if f.get("avx2") and f.get("fma"):
        return "avx2"
    return "default"


def check_threads(fn: str, v: Any) -> int:
    """OpenMP threads ATen splits the work across. None: torch.get_num_threads() when torch is
    imported, else 1."""
    if v is None:
        torch = sys.modules.get("torch")
        return int(torch.get_num_threads()) if torch is not None else 1
    return check_int(fn, "num_threads", v, 1, 4096)


def check_size_list(fn: str, name: str, v: Any, n: int, lo: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            v = tuple(v) * n
        if len(v) != n:
            raise ValueError(f"{fn}: {name}={v!r} has {len(v)} entries (must be an int or {n} ints)")
        return tuple(check_int(fn, f"{name}[{i}]", e, lo, (1 << 31) - 1) for i, e in enumerate(v))
    iv = check_int(fn, name, v, lo, (1 << 31) - 1)
    return (iv,) * n
