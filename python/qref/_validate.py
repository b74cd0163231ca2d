"""Argument checks at the API boundary, one message template:
``<function>: <argument> <what is wrong> (<the rule>)``.

Kernels never validate; everything that reaches ``_core`` has passed here.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
# Output elements and index arithmetic stay far inside int64.
MAX_ELEMENTS = 1 << 40


def is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "is_quantized")


def check_int(fn: str, name: str, v: Any, lo: int | None = None, hi: int | None = None, rule: str = "") -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral,)):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__} {v!r}")
    iv = int(v)
    if (lo is not None and iv < lo) or (hi is not None and iv > hi):
        rng = rule or f"must be in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{fn}: {name}={iv} is out of range ({rng})")
    return iv


def check_pair(fn: str, name: str, v: Any, lo: int) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"{fn}: {name}={v!r} must be an int or a pair (h, w)")
        a = check_int(fn, f"{name}[0]", v[0], lo, None, f"must be >= {lo}")
        b = check_int(fn, f"{name}[1]", v[1], lo, None, f"must be >= {lo}")
        return a, b
    a = check_int(fn, name, v, lo, None, f"must be >= {lo}")
    return a, a


def check_scale(fn: str, name: str, v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a float, got {type(v).__name__} {v!r}")
    f = float(v)
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"{fn}: {name}={f!r} is not a valid scale (must be finite and > 0)")
    f32 = float(np.float32(f))
    if not math.isfinite(f32) or f32 < _F32_TINY:
        raise ValueError(
            f"{fn}: {name}={f!r} rounds to {f32!r} in float32, which fbgemm uses "
            f"(must be a normal float32 in [{_F32_TINY:.3g}, {_F32_MAX:.3g}])"
        )
    return f


def check_scales_array(fn: str, name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"{fn}: {name} must hold floats, got dtype {a.dtype}")
    a = a.astype(np.float64)
    for i, f in enumerate(a.ravel()):
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"{fn}: {name}[{i}]={float(f)!r} is not a valid scale (must be finite and > 0)")
        f32 = float(np.float32(f))
        if not math.isfinite(f32) or f32 < _F32_TINY:
            raise ValueError(
                f"{fn}: {name}[{i}]={float(f)!r} rounds to {f32!r} in float32 "
                f"(must be a normal float32 in [{_F32_TINY:.3g}, {_F32_MAX:.3g}])"
            )
    return np.ascontiguousarray(a)


def check_zero_points_array(fn: str, name: str, a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name} must hold ints, got dtype {a.dtype}")
    if a.size and (a.min() < lo or a.max() > hi):
        bad = int(a[(a < lo) | (a > hi)].ravel()[0])
        raise ValueError(f"{fn}: {name} holds {bad}, out of range (must be in [{lo}, {hi}])")
    return np.ascontiguousarray(a.astype(np.int32))


def check_array(fn: str, name: str, a: Any, dtype: Any, ndim: int, layout: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy {np.dtype(dtype).name} array or a torch quantized tensor, "
                        f"got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise TypeError(f"{fn}: {name} has dtype {a.dtype}, expected {np.dtype(dtype).name} "
                        f"(qref never casts silently; convert it yourself)")
    if a.ndim != ndim:
        raise ValueError(f"{fn}: {name} has shape {tuple(a.shape)}, expected {ndim} dimensions {layout}")
    return a


def check_choice(fn: str, name: str, v: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{fn}: {name} must be a string, one of {choices}; got {type(v).__name__}")
    if v not in choices:
        raise ValueError(f"{fn}: {name}={v!r} is not valid (valid: {', '.join(repr(c) for c in choices)})")
    return v


def check_threads(fn: str, threads: Any) -> int | None:
    if threads is None:
        return None
    return check_int(fn, "threads", threads, 1, 4096, "must be None (all cores) or an int in [1, 4096]")
