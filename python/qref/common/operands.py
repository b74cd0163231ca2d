"""The operands of every layer, validated at the API boundary: activation, weight, bias, output
quantization and conv2d geometry (one message template: see qref.common.validate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .layout import _channels_last, _int_view, _quint8_nhwc_view
from .validate import (
    INT32_MAX,
    check_array,
    check_input_elements,
    check_int,
    check_ndim,
    check_pair,
    check_scale,
    check_scales_array,
    check_tuple,
    check_zero_points_array,
    is_torch_tensor,
)


@dataclass(frozen=True, eq=False)
class _Act:
    nhwc: np.ndarray  # uint8 (N, H, W, C), C-contiguous
    scale: float
    zero_point: int
    from_torch: bool


@dataclass(frozen=True, eq=False)
class _Weight:
    oihw: np.ndarray  # int8 (O, C/groups, KH, KW)
    scale: np.ndarray  # float64 (1,) or (O,)
    zero_point: np.ndarray  # int32, same count
    per_channel: bool



def check_quint8_activation(fn: str, name: str, x: Any) -> None:
    """``x`` (a torch tensor) must be a per-tensor quantized torch.quint8 activation; else a TypeError /
    ValueError that names ``fn``, the argument ``name`` and the rule."""
    import torch

    if not x.is_quantized or x.dtype != torch.quint8:
        raise TypeError(f"{fn}: {name}.dtype={x.dtype} (must be a torch.quint8 quantized tensor, or a numpy "
                        f"uint8 array with input_scale and input_zero_point)")
    if x.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        raise ValueError(f"{fn}: {name}.qscheme()={x.qscheme()} (activations must be per-tensor quantized)")

def _activation(fn: str, x: Any, scale: Any, zero_point: Any, ndim: int, layout: str, *, at_least: bool = False,
                channels_last: bool = False, materialize: bool = True) -> tuple[np.ndarray, float, int, bool]:
    """The activation operand of every layer: (uint8 values, scale, zero point, from_torch).

    ``x`` is a quint8 tensor or a uint8 array with ``input_scale``/``input_zero_point``, of
    ``ndim`` dimensions (``at_least``: ``ndim`` or more) laid out as ``layout``. The values come
    back C-contiguous; ``channels_last`` (4-D only, conv2d's kernels) gives them as (N, H, W, C).
    ``materialize=False``: the values as a view, not copied yet (the caller checks the geometry
    first and makes the copy with ``_materialize``)."""
    if is_torch_tensor(x):
        check_quint8_activation(fn, "input", x)
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: input_scale={scale!r}, input_zero_point={zero_point!r} with a quantized tensor "
                             f"input (must be None: its own q_scale()={x.q_scale()} and "
                             f"q_zero_point()={x.q_zero_point()} are used)")
        check_ndim(fn, "input", x.shape, ndim, layout, at_least)
        if x.device.type != "cpu":
            raise ValueError(f"{fn}: input.device={x.device} (must be a CPU tensor)")
        s = check_scale(fn, "input.q_scale()", x.q_scale())
        zp = check_int(fn, "input.q_zero_point()", x.q_zero_point(), 0, 255, "quint8 zero point must be in [0, 255]")
        check_input_elements(fn, "input", x.shape)
        # Any memory format (channels_last included): the integer view keeps the strides,
        # the permutation is a view, and ascontiguousarray makes at most one copy.
        if not materialize:
            return _int_view(x), s, zp, True
        return np.ascontiguousarray(_quint8_nhwc_view(x) if channels_last else _int_view(x)), s, zp, True
    a = check_array(fn, "input", x, np.uint8, ndim, layout, at_least)
    if scale is None or zero_point is None:
        raise ValueError(f"{fn}: input_scale={scale!r}, input_zero_point={zero_point!r} (both are required when "
                         f"input is a plain uint8 array)")
    s = check_scale(fn, "input_scale", scale)
    zp = check_int(fn, "input_zero_point", zero_point, 0, 255, "uint8 activations: must be in [0, 255]")
    check_input_elements(fn, "input", a.shape)
    if not materialize:
        return a, s, zp, False
    return _materialize(a, channels_last), s, zp, False


def _materialize(a: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """An activation view (N, C, ...) as C-contiguous values, (N, H, W, C) with channels_last:
    any strides (negative, non-contiguous, Fortran order, a quint8 tensor's storage), at most one
    copy."""
    return _channels_last(a) if channels_last else np.ascontiguousarray(a)


def _input_operand(fn: str, x: Any, scale: Any, zero_point: Any) -> _Act:
    """conv2d's activation: (N, C, H, W) in, NHWC values out."""
    return _Act(*_activation(fn, x, scale, zero_point, 4, "(N, C, H, W)", channels_last=True))


def _ndim(v: Any) -> int:
    """How many dimensions a scale/zero-point argument has, without letting numpy
    raise on ragged input (0 for anything scalar-like)."""
    if is_torch_tensor(v):
        return int(v.dim())
    if isinstance(v, np.ndarray):
        return v.ndim
    if isinstance(v, (list, tuple)):
        return 1
    return 0


# The weight layouts of the layers, by dimension (transposed convs pass torch's own).
_WEIGHT_LAYOUTS = {2: "(O, K)", 3: "(O, C/groups, k)", 4: "(O, C/groups, kH, kW)", 5: "(O, C/groups, kD, kH, kW)"}


def _weight_operand(fn: str, w: Any, scale: Any, zero_point: Any, ndim: int = 4,
                    layout: Optional[str] = None) -> _Weight:
    """The weight operand of every layer: a qint8 tensor (per-tensor or per-channel along axis
    0) or an int8 array with ``weight_scale``/``weight_zero_point``, ``ndim``-D ``layout``
    (default: the conv/linear layout of that dimension)."""
    layout = layout or _WEIGHT_LAYOUTS[ndim]
    if is_torch_tensor(w):
        import torch

        if not w.is_quantized or w.dtype != torch.qint8:
            raise TypeError(f"{fn}: weight.dtype={w.dtype} (must be a torch.qint8 quantized tensor, or a numpy int8 "
                            f"array with weight_scale)")
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: weight_scale={scale!r}, weight_zero_point={zero_point!r} with a quantized tensor "
                             f"weight (must be None: the tensor's own quantization parameters are used)")
        check_ndim(fn, "weight", w.shape, ndim, layout)
        if w.device.type != "cpu":
            raise ValueError(f"{fn}: weight.device={w.device} (must be a CPU tensor)")
        qs = w.qscheme()
        if qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            sc = check_scales_array(fn, "weight.q_scale()", np.array([w.q_scale()]))
            zp = check_zero_points_array(fn, "weight.q_zero_point()", np.array([w.q_zero_point()]), -128, 127)
            return _Weight(np.ascontiguousarray(_int_view(w)), sc, zp, False)
        if qs in (torch.per_channel_affine, torch.per_channel_symmetric):
            if w.q_per_channel_axis() != 0:
                raise ValueError(f"{fn}: weight.q_per_channel_axis()={w.q_per_channel_axis()} (fbgemm needs "
                                 f"per-channel quantization along axis 0, the output channels)")
            sc = check_scales_array(fn, "weight.q_per_channel_scales()", w.q_per_channel_scales())
            zp = check_zero_points_array(fn, "weight.q_per_channel_zero_points()", w.q_per_channel_zero_points(),
                                         -128, 127)
            return _Weight(np.ascontiguousarray(_int_view(w)), sc, zp, True)
        raise ValueError(f"{fn}: weight.qscheme()={qs} (must be per-tensor or per-channel, affine or symmetric)")
    a = check_array(fn, "weight", w, np.int8, ndim, layout)
    if scale is None:
        raise ValueError(f"{fn}: weight_scale=None (required when weight is a plain int8 array)")
    O = a.shape[0]
    if _ndim(scale) > 1:
        raise ValueError(f"{fn}: weight_scale has {_ndim(scale)} dimensions (must be a float, or a 1-D sequence of "
                         f"{O} floats for per-channel)")
    if _ndim(scale) == 1:
        sc = check_scales_array(fn, "weight_scale", scale).reshape(-1)
        if sc.shape[0] != O:
            raise ValueError(f"{fn}: weight_scale has {sc.shape[0]} entries but weight has {O} output channels "
                             f"(per-channel scales: one per output channel)")
        if zero_point is None:
            zp = np.zeros(O, np.int32)
        elif _ndim(zero_point) == 0:
            zp = np.full(O, check_int(fn, "weight_zero_point", zero_point, -128, 127,
                                      "int8 weights: must be in [-128, 127]"), np.int32)
        elif _ndim(zero_point) == 1:
            zp = check_zero_points_array(fn, "weight_zero_point", zero_point, -128, 127).reshape(-1)
        else:
            raise ValueError(f"{fn}: weight_zero_point has {_ndim(zero_point)} dimensions (must be an int or a 1-D "
                             f"sequence of {O} ints)")
        if zp.shape[0] != O:
            raise ValueError(f"{fn}: weight_zero_point has {zp.shape[0]} entries but weight has {O} output channels "
                             f"(per-channel zero points: one per output channel)")
        return _Weight(np.ascontiguousarray(a), sc, zp, True)
    s = check_scale(fn, "weight_scale", scale)
    if zero_point is not None and _ndim(zero_point) > 0:
        raise ValueError(f"{fn}: weight_zero_point is a sequence but weight_scale={s!r} is a scalar "
                         f"(per-tensor: both scalars; per-channel: both (O,) sequences)")
    zp0 = 0 if zero_point is None else check_int(fn, "weight_zero_point", zero_point, -128, 127,
                                                 "int8 weights: must be in [-128, 127]")
    return _Weight(np.ascontiguousarray(a), np.array([s], np.float64), np.array([zp0], np.int32), False)


def _bias_operand(fn: str, b: Any, O: int) -> Optional[np.ndarray]:
    if b is None:
        return None
    if is_torch_tensor(b):
        import torch

        if b.is_quantized or b.dtype != torch.float32:
            raise TypeError(f"{fn}: bias.dtype={b.dtype} (must be float32: torch's quantized conv holds a float32 "
                            f"bias)")
        b = b.detach().cpu().numpy()
    if not isinstance(b, np.ndarray):
        raise TypeError(f"{fn}: bias has type {type(b).__name__} (must be None or a float32 array of length {O})")
    if b.dtype != np.float32:
        raise TypeError(f"{fn}: bias.dtype={b.dtype} (must be float32: torch's quantized conv holds a float32 bias; "
                        f"qref never casts silently)")
    if b.shape != (O,):
        raise ValueError(f"{fn}: bias.shape={tuple(b.shape)} (must be ({O},), one per output channel)")
    if not np.all(np.isfinite(b)):
        i = int(np.flatnonzero(~np.isfinite(b))[0])
        raise ValueError(f"{fn}: bias[{i}]={float(b[i])!r} (bias must be finite)")
    return np.ascontiguousarray(b, dtype=np.float32)


def _conv2d_geometry(fn: str, groups: Any, stride: Any, padding: Any, dilation: Any) -> tuple:
    """groups, stride, padding, dilation of a 2D conv: (g, (sh, sw), (ph, pw), (dh, dw))."""
    g = check_int(fn, "groups", groups, 1, INT32_MAX, "must be an int in [1, 2^31-1]")
    st = check_pair(fn, "stride", stride, 1)
    pd = check_pair(fn, "padding", padding, 0)
    dl = check_pair(fn, "dilation", dilation, 1)
    return g, st, pd, dl


def _output_quant(fn: str, output_scale: Any, output_zero_point: Any) -> tuple[float, int]:
    """The quint8 output quantization of every layer: (scale, zero point)."""
    return (check_scale(fn, "output_scale", output_scale),
            check_int(fn, "output_zero_point", output_zero_point, 0, 255, "quint8 output: must be in [0, 255]"))


def _as_tuple(fn: str, name: str, v: Any, n: int, lo: int) -> tuple:
    """An int or `n` ints, each in [lo, 2^31-1] (fbgemm's conv_param_t holds C ints)."""
    return check_tuple(fn, name, v, n, lo, count_rule=f"must be an int or a tuple of {n} ints")
