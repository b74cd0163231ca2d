"""Argument checks at the API boundary, one message template:
``<function>: <argument> <what is wrong> (<the rule>)``.

Kernels never validate; everything that reaches ``_core`` has passed here.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np

from .isa import ISAS

_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
# Output elements and index arithmetic stay far inside int64.
MAX_ELEMENTS = 1 << 40
# fbgemm's conv_param_t (include/fbgemm/ConvUtils.h) holds every size, stride,
# padding and dilation as a C `int`, and torch narrows its int64 arguments into
# it; qref refuses what fbgemm cannot represent instead of narrowing.
INT32_MAX = (1 << 31) - 1


def is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "is_quantized")


def check_int(fn: str, name: str, v: Any, lo: int | None = None, hi: int | None = None, rule: str = "") -> int:
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iu":
        v = v.item()  # a 0-d integer array is a scalar, as a 0-d float array is for scales
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral,)):
        raise TypeError(f"{fn}: {name}={v!r} has type {type(v).__name__} (must be an int)")
    iv = int(v)
    if (lo is not None and iv < lo) or (hi is not None and iv > hi):
        rng = rule or f"must be in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{fn}: {name}={iv} is out of range ({rng})")
    return iv


def check_pair(fn: str, name: str, v: Any, lo: int, hi: int = INT32_MAX) -> tuple[int, int]:
    rule = (f"must be an int in [{lo}, 2^31-1]: fbgemm's conv_param_t holds a C int" if hi == INT32_MAX
            else f"must be an int in [{lo}, {hi}]")
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"{fn}: {name}={v!r} has {len(v)} entries (must be an int or a pair (h, w))")
        a = check_int(fn, f"{name}[0]", v[0], lo, hi, rule)
        b = check_int(fn, f"{name}[1]", v[1], lo, hi, rule)
        return a, b
    if isinstance(v, np.ndarray) and v.ndim == 1:
        return check_pair(fn, name, tuple(v.tolist()), lo, hi)
    a = check_int(fn, name, v, lo, hi, rule)
    return a, a


def check_scale(fn: str, name: str, v: Any) -> float:
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "fiu":
        v = v.item()
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name}={v!r} has type {type(v).__name__} (must be a float)")
    try:
        f = float(v)
    except OverflowError:  # a Python int beyond the double range
        raise ValueError(f"{fn}: {name}={v!r} is not a valid scale (must be finite and > 0)") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"{fn}: {name}={f!r} is not a valid scale (must be finite and > 0)")
    with np.errstate(over="ignore"):
        f32 = float(np.float32(f))
    if not math.isfinite(f32) or f32 < _F32_TINY:
        raise ValueError(
            f"{fn}: {name}={f!r} rounds to {f32!r} in float32, which fbgemm uses "
            f"(must be a normal float32 in [{_F32_TINY:.3g}, {_F32_MAX:.3g}])"
        )
    return f


def check_scales_array(fn: str, name: str, a: np.ndarray) -> np.ndarray:
    a = _as_numpy(fn, name, a)
    if a.dtype == object:
        return np.array([check_scale(fn, f"{name}[{i}]", v) for i, v in enumerate(a.ravel())], np.float64)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{fn}: {name}.dtype={a.dtype} (scales must be floats)")
    a = a.astype(np.float64)
    # Fast path (this runs on every conv call): all valid, vectorized;
    # the loop below only runs to name the first bad element.
    with np.errstate(over="ignore", invalid="ignore"):
        f32s = a.astype(np.float32)
        if bool(np.all(np.isfinite(a) & (a > 0) & np.isfinite(f32s) & (f32s >= _F32_TINY))):
            return np.ascontiguousarray(a)
    for i, f in enumerate(a.ravel()):
        check_scale(fn, f"{name}[{i}]", float(f))  # raises for the first bad element
    return np.ascontiguousarray(a)


def check_zero_points_array(fn: str, name: str, a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    a = _as_numpy(fn, name, a)
    if a.dtype == object:  # e.g. Python ints beyond int64
        vals = [check_int(fn, f"{name}[{i}]", v, lo, hi, f"must be in [{lo}, {hi}]") for i, v in enumerate(a.ravel())]
        return np.array(vals, np.int32)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name}.dtype={a.dtype} (zero points must be ints)")
    if a.size and (a.min() < lo or a.max() > hi):
        i = int(np.flatnonzero((a.ravel() < lo) | (a.ravel() > hi))[0])
        raise ValueError(f"{fn}: {name}[{i}]={int(a.ravel()[i])} is out of range (must be in [{lo}, {hi}])")
    return np.ascontiguousarray(a.astype(np.int32))


def _as_numpy(fn: str, name: str, a: Any) -> np.ndarray:
    """A scale/zero-point container as numpy without a silent float<->int cast
    (torch tensors through .numpy(), sequences through np.asarray)."""
    if is_torch_tensor(a):
        if a.is_quantized:
            raise TypeError(f"{fn}: {name} is a quantized {a.dtype} tensor (must be plain numbers)")
        return a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (ValueError, TypeError):  # ragged or exotic sequences
        raise TypeError(f"{fn}: {name}={a!r} (must be a number or a 1-D sequence of numbers)") from None


def check_ndim(fn: str, name: str, shape: Any, ndim: int, layout: str, at_least: bool = False) -> None:
    """`shape` has exactly `ndim` dimensions (`at_least`: `ndim` or more)."""
    n = len(shape)
    if n < ndim if at_least else n != ndim:
        rule = f"must be at least {ndim}-D {layout}" if at_least else f"must be {ndim}-D {layout}"
        raise ValueError(f"{fn}: {name}.shape={tuple(shape)} has {n} dimensions ({rule})")


def check_array(fn: str, name: str, a: Any, dtype: Any, ndim: int, layout: str, at_least: bool = False) -> np.ndarray:
    """A numpy array of exactly `dtype` and `ndim` (`at_least`: `ndim` or more) dimensions
    (any strides, any byte order of a one-byte type; callers make it C-contiguous)."""
    want = np.dtype(dtype)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} has type {type(a).__name__} (must be a numpy {want.name} array or a torch "
                        f"quantized tensor)")
    if a.dtype != want:
        raise TypeError(f"{fn}: {name}.dtype={a.dtype} (must be {want.name}; qref never casts silently, "
                        f"convert it yourself)")
    check_ndim(fn, name, a.shape, ndim, layout, at_least)
    return a


def check_choice(fn: str, name: str, v: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(v, str):
        raise TypeError(f"{fn}: {name}={v!r} has type {type(v).__name__} (must be one of "
                        f"{', '.join(repr(c) for c in choices)})")
    if v not in choices:
        raise ValueError(f"{fn}: {name}={v!r} is not valid (valid: {', '.join(repr(c) for c in choices)})")
    return v


def check_threads(fn: str, threads: Any) -> int | None:
    if threads is None:
        return None
    return check_int(fn, "threads", threads, 1, 4096, "must be None (all cores) or an int in [1, 4096]")


def check_bool(fn: str, name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name}={v!r} has type {type(v).__name__} (must be a bool)")
    return bool(v)


def check_tuple(fn: str, name: str, v: Any, n: int, lo: int, hi: int = INT32_MAX,
                count_rule: Optional[str] = None) -> tuple:
    """An int or a sequence of `n` ints (one entry: repeated), each in [lo, hi] (default: what
    fbgemm's conv_param_t holds), named by its index in the caller's own argument. ``count_rule``:
    the message for a sequence of another length (default: how many entries it has, and the rule)."""
    rule = (f"must be an int in [{lo}, 2^31-1]: fbgemm's conv_param_t holds a C int" if hi == INT32_MAX
            else f"must be an int in [{lo}, {hi}]")
    if isinstance(v, np.ndarray) and v.ndim == 1:
        v = tuple(v.tolist())
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = tuple(v) * n
        if len(v) != n:
            raise ValueError(f"{fn}: {name}={v!r} " + (count_rule or f"has {len(v)} entries (must be an int or a "
                                                                         f"sequence of {n} ints)"))
        return tuple(check_int(fn, f"{name}[{i}]", x, lo, hi, rule) for i, x in enumerate(v))
    return (check_int(fn, name, v, lo, hi, rule),) * n


def check_input_elements(fn: str, name: str, shape: Any) -> None:
    """An operand is at most 2^40 elements, checked from its shape before anything is copied
    (a broadcast view can name far more elements than memory holds)."""
    n = 1
    for d in shape:
        n *= int(d)
    if n > MAX_ELEMENTS:
        raise ValueError(f"{fn}: {name}.shape={tuple(int(d) for d in shape)} has {n} elements (at most 2^40, so "
                         f"index arithmetic stays inside int64)")


def check_conv_output(fn: str, N: int, C: int, O: int, spatial: tuple, ks: tuple, st: tuple, pd: tuple, dl: tuple,
                      groups: int, output_padding: tuple | None = None) -> tuple:
    """Spatial output sizes of a (transposed, when output_padding is given) convolution, after
    the size rules every engine needs, checked before anything is allocated: each padded input
    and kernel span fits a C int, the kernel fits the padded input (forward), every output size is
    >= 1, and the output has at most 2^40 elements and 2^62 multiply-adds."""
    out = []
    for i, (n_in, k, s, p, d) in enumerate(zip(spatial, ks, st, pd, dl)):
        span = d * (k - 1) + 1
        if span > INT32_MAX:
            raise ValueError(f"{fn}: kernel span dilation*(k-1)+1={span} in spatial dim {i} is too large (must be "
                             f"<= 2^31-1: fbgemm's conv_param_t holds a C int)")
        if output_padding is None:
            if n_in + 2 * p > INT32_MAX:
                raise ValueError(f"{fn}: padded input size {n_in + 2 * p} in spatial dim {i} is too large (must be "
                                 f"<= 2^31-1: fbgemm's conv_param_t holds a C int)")
            if span > n_in + 2 * p:
                raise ValueError(f"{fn}: kernel size {k} with dilation {d} spans {span} in spatial dim {i}, larger "
                                 f"than the padded input {n_in + 2 * p} (kernel must fit in the padded input)")
            size = (n_in + 2 * p - span) // s + 1
        else:
            size = (n_in - 1) * s - 2 * p + span + output_padding[i]
            if size < 1:
                raise ValueError(f"{fn}: output size {size} in spatial dim {i} is < 1 (input {n_in}, stride {s}, "
                                 f"padding {p}, kernel {k}, dilation {d}, output_padding {output_padding[i]})")
            if size > INT32_MAX:
                raise ValueError(f"{fn}: output size {size} in spatial dim {i} is too large (must be <= 2^31-1: "
                                 f"fbgemm's conv_param_t holds a C int)")
        out.append(size)
    elems = N * O
    K = max(1, C // max(1, groups))
    for v, k in zip(out, ks):
        elems *= v
        K *= k
    if elems > MAX_ELEMENTS or elems * K > (1 << 62):
        raise ValueError(f"{fn}: output shape {(N, O) + tuple(out)} is too large (at most 2^40 output elements and "
                         f"2^62 multiply-adds, so index arithmetic stays inside int64)")
    return tuple(out)


def check_index(fn: str, index: Any) -> Any:
    """An output index: a flat int, or a sequence (or "n,c,h,w" string) of ints, each entry an
    int (a float such as 1.7 is refused, never truncated). Returns an int or a tuple of ints."""
    if isinstance(index, np.ndarray) and index.ndim == 0:
        index = index.item()
    if isinstance(index, (numbers.Integral,)) and not isinstance(index, (bool, np.bool_)):
        return int(index)
    if isinstance(index, str):
        parts = [v for v in index.replace(" ", "").split(",") if v]
        try:
            return tuple(int(v) for v in parts)
        except ValueError:
            raise ValueError(f"{fn}: index={index!r} (a string index must be comma-separated ints, e.g. "
                             f"'0,3,5,7')") from None
    if isinstance(index, np.ndarray) and index.ndim == 1:
        index = index.tolist()
    if not isinstance(index, (tuple, list)):
        raise TypeError(f"{fn}: index={index!r} has type {type(index).__name__} (must be a flat int or a tuple of "
                        f"ints, one per output dimension)")
    return tuple(check_int(fn, f"index[{i}]", v) for i, v in enumerate(index))


def check_reflect_padding(fn: str, padding: tuple, shape: tuple) -> None:
    """padding_mode='reflect' needs every padding smaller than its input dimension (torch's rule,
    F.pad: "Padding size should be less than the corresponding input dimension")."""
    spatial = tuple(int(d) for d in shape[2:])
    for i, (p, d) in enumerate(zip(padding, spatial)):
        if p >= d:
            raise ValueError(f"{fn}: padding={tuple(padding)} with padding_mode='reflect' on an input of shape "
                             f"{tuple(int(v) for v in shape)}: padding[{i}]={p} is not smaller than the input's "
                             f"spatial size {d} (reflect padding must be smaller than the input, torch's rule)")


def check_shape(fn: str, name: str, shape: Any, ndim: int, lo: int, layout: str) -> tuple:
    """A shape argument: a sequence of `ndim` ints, each in [lo, 2^31-1]."""
    if isinstance(shape, np.ndarray):
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{fn}: {name}={shape!r} has type {type(shape).__name__} (must be a sequence of {ndim} ints "
                        f"{layout})")
    if len(shape) != ndim:
        raise ValueError(f"{fn}: {name}={tuple(shape)!r} has {len(shape)} entries (must be {ndim}: {layout})")
    return tuple(check_int(fn, f"{name}[{i}]", v, lo, INT32_MAX, f"must be an int in [{lo}, 2^31-1]")
                 for i, v in enumerate(shape))


def check_plan_args(fn: str, input_shape: Any, weight_shape: Any, stride: Any, padding: Any, dilation: Any,
                    groups: Any, nd: int, transposed: bool = False, isa: Any = "auto") -> tuple:
    """The arguments of conv_plan / conv_nd_plan, by the rules the layer functions apply:
    (input shape, weight shape, stride, padding, dilation, groups)."""
    check_choice(fn, "isa", isa, ISAS)
    names = {1: "L", 2: "H, W", 3: "D, H, W"}[nd]
    ks = {1: "k", 2: "kH, kW", 3: "kD, kH, kW"}[nd]
    ins = check_shape(fn, "input_shape", input_shape, nd + 2, 0, f"(N, C, {names})")
    ws = check_shape(fn, "weight_shape", weight_shape, nd + 2, 1, f"(O, C/groups, {ks})")
    st = check_tuple(fn, "stride", stride, nd, 1)
    pd = check_tuple(fn, "padding", padding, nd, 0)
    dl = check_tuple(fn, "dilation", dilation, nd, 1)
    g = check_int(fn, "groups", groups, 1, INT32_MAX, "must be an int in [1, 2^31-1]")
    C, O, Cg = ins[1], ws[0], ws[1]
    if C % g != 0 or O % g != 0:
        raise ValueError(f"{fn}: groups={g} with C={C} input and O={O} output channels (both must be divisible by "
                         f"groups)")
    if Cg * g != C:
        raise ValueError(f"{fn}: weight_shape has {Cg} input channels per group but input_shape has C={C} with "
                         f"groups={g} (input channels must equal groups * weight channels per group)")
    if not transposed:
        check_conv_output(fn, ins[0], C, O, ins[2:], ws[2:], st, pd, dl, g)
    return ins, ws, st, pd, dl, g


def check_inputs(fn: str, inputs: tuple) -> None:
    """A torch model's inputs are torch tensors (or other objects the model takes), never numpy
    arrays, which the model would refuse deep inside with torch's own message."""
    for i, x in enumerate(inputs):
        if isinstance(x, np.ndarray):
            raise TypeError(f"{fn}: inputs[{i}] is a numpy {x.dtype} array of shape {x.shape} (the model runs on torch "
                            f"tensors: pass torch.from_numpy(x))")
