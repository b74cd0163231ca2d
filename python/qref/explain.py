"""qref.explain: the worked derivation of one output element of a quantized conv.

The element is recomputed step by step in Python with numpy float32 scalars (IEEE single
precision, one rounding per operation), following the same order of operations as
``csrc/qref/fbgemm/requant.h`` (docs/numerics.md §4-§5): the receptive field, the int16 pair
saturation, the zero-point terms, the bias, the multiplier and the rounding. fbgemm's
per-channel constants (multiplier, column offsets, bias term or bias reciprocal) are the ones
the kernels use, read from the core (``_core.requant_params``); oneDNN's effective scales likewise
(``_core.onednn_scales``). Its final value, accumulator, raw integer and pre-rounding float32 must
equal what ``qref.conv2d(..., return_intermediates=True)`` computes; ``tests/test_explain.py``
checks that for hundreds of elements and against torch.

``str(explanation)`` reads like a forum answer; ``explanation.to_dict()`` serves tools.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional, Sequence

import numpy as np

from . import _core
from . import onnx as _onnx
from .bridge.from_torch import from_torch
from .bridge.modules import Conv2dParams
from .bridge.onednn_verbose import _with_onednn_kernel
from .common.fp import fma_f32
from .common.isa import ISAS
from .common.operands import check_quint8_activation
from .common.validate import check_choice, check_index, check_int, check_scale, is_torch_tensor
from .engines import aten as aten_ops
from .engines.aten._args import check_capability, check_threads
from .engines.aten._ops import _layout
from .engines.fbgemm.conv2d import conv_plan
from .engines.onednn import conv2d as od
from .engines.onednn.nd import plan_nd
from .layers.conv_nd import _transposed_weight

INT32_MIN = -(2**31)


def _wrap32(v: int) -> int:
    """int32 wrap-around (vpaddd / vpmulld)."""
    return (int(v) + 2**31) % 2**32 - 2**31


def _sat16(v: int) -> int:
    """int16 saturation (vpmaddubsw's pair sum, vpackssdw, vpaddsw)."""
    return -32768 if v < -32768 else (32767 if v > 32767 else int(v))


def _cvtps2dq(y: np.float32) -> int:
    """cvtps2dq in the default MXCSR mode: round half to even; out of int32 range (or NaN)
    gives INT32_MIN, which then saturates to the low clamp (docs/numerics.md §5.4)."""
    yd = float(y)
    if not (-2147483648.0 <= yd < 2147483648.0):
        return INT32_MIN
    return int(np.rint(yd))  # float32 -> double is exact; rint is half-to-even


def _f32_hex(v: Any) -> str:
    return float(np.float32(v)).hex()


def _f32(v: Any) -> str:
    """All digits that identify a float32: its shortest round-trip repr."""
    return repr(float(np.float32(v))) if np.isfinite(np.float32(v)) else str(np.float32(v))


def _printed(v: float) -> float:
    """A scale as ``print(model)`` shows it: torch's tensor formatting (4 decimals, or
    4 significant digits in scientific mode), parsed back to a number."""
    s = np.format_float_positional(v, precision=4, unique=False, fractional=True, trim="-") \
        if abs(v) >= 1e-4 or v == 0 else np.format_float_scientific(v, precision=4, unique=False)
    return float(s)


@dataclass(frozen=True)
class Tap:
    """One term of the receptive field, in fbgemm's per-group K order (kh, kw, c)."""

    k: int  # position in the per-group reduction order
    kh: int
    kw: int
    c: int  # input channel (absolute)
    ih: int
    iw: int
    padded: bool  # outside the image: holds the activation zero point
    a: int  # uint8 activation
    w: int  # int8 weight
    product: int
    kd: int = 0  # Conv3d / ConvTranspose3d: the depth tap and the input depth (-1: no input)
    id: int = 0


@dataclass(frozen=True)
class SaturatedPair:
    """A pair (k, k+1) whose int16 sum fbgemm saturates (vpmaddubsw)."""

    k0: int
    k1: Optional[int]  # None: an odd last element paired with zero
    taps: tuple  # ((kh, kw, c), ...) of the members
    exact: int
    saturated: int

    @property
    def lost(self) -> int:
        return self.exact - self.saturated


@dataclass(frozen=True)
class HandFormula:
    """A common way of computing the element by hand, and what it gives here."""

    name: str
    formula: str
    value: int
    matches: bool
    why: str


@dataclass(frozen=True)
class Explanation:
    """The full derivation of one output element (see ``str()``)."""

    index: tuple  # (n, o, oh, ow)
    layer: str
    path: str
    saturates: bool
    isa: str
    group: int
    taps: tuple  # Tap, ...
    acc: int  # int32 accumulator as fbgemm forms it (saturated pairs where it saturates)
    acc_exact: int  # the mathematically exact sum of products
    saturated_pairs: tuple  # SaturatedPair, ...
    rowsum: int
    K: int
    colsum: int
    col_offset: int  # colsum - w_zp * K (int32)
    input_zero_point: int
    weight_zero_point: int
    a_zp_term: int  # a_zp * col_offset
    w_zp_term: int  # rowsum * w_zp
    raw: int
    input_scale: float  # as torch holds it (double)
    weight_scale: float
    output_scale: float
    a_f: float  # float32 values (exact as Python floats)
    w_f: float
    o_f: float
    S: float  # f32(a_f * w_f)
    M: float  # f32(S / o_f)
    per_channel: bool
    bias: Optional[float]
    bias_term: Optional[float]
    reciprocal: Optional[float]  # per-tensor only: f32(1.0 / (double)S)
    yf: float  # f32(float(raw) + bias_term)
    y: float  # f32(yf * M): the pre-rounding value
    tie: bool
    rounded: int  # cvtps2dq(y)
    output_zero_point: int
    relu: bool
    low: int
    unclamped: int  # rounded + out_zp
    value: int  # the uint8 output
    hand: tuple  # HandFormula, ...
    torch_value: Optional[int] = None
    notes: tuple = field(default_factory=tuple)
    engine: str = "fbgemm"  # whose arithmetic: "fbgemm", or "onednn" (then see `onednn`)
    onednn: Optional[dict] = None  # oneDNN's steps (kernel, ss, inv, ws, A, scaled, ..., see _explain_onednn)
    kind: str = "Conv2d"  # the layer form derived: Conv2d (Linear, Conv1d run as it), Conv3d, ConvTranspose1d/2d/3d

    def to_dict(self) -> dict:
        d = asdict(self)
        d["taps"] = [asdict(t) for t in self.taps]
        d["saturated_pairs"] = [dict(asdict(p), lost=p.lost) for p in self.saturated_pairs]
        d["hand"] = [asdict(h) for h in self.hand]
        d["index"] = list(self.index)
        d["hex"] = {k: _f32_hex(getattr(self, k)) for k in ("a_f", "w_f", "o_f", "S", "M", "yf", "y")}
        if self.bias_term is not None:
            d["hex"]["bias_term"] = _f32_hex(self.bias_term)
        return d

    # ------------------------------------------------------------------ text

    def __str__(self) -> str:
        return _render(self)


# ---------------------------------------------------------------------------- derivation


def _as_params(module_or_params: Any):
    if isinstance(module_or_params, Conv2dParams) or (
            getattr(module_or_params, "kind", "") and isinstance(getattr(module_or_params, "weight", None), np.ndarray)):
        params, module = module_or_params, None  # a Conv2dParams, or the params of another layer (qref.from_torch)
    elif module_or_params is None or not hasattr(module_or_params, "weight"):
        raise TypeError(f"explain: module_or_params must be a qref.Conv2dParams or a torch quantized conv module, "
                        f"got {type(module_or_params).__name__}")
    else:
        params, module = from_torch(module_or_params), module_or_params
    kind = getattr(params, "kind", "")
    if not isinstance(params, Conv2dParams) and kind not in ("linear", "conv1d", "conv3d", "conv_transpose"):
        raise NotImplementedError(f"explain: {type(params).__name__} ({getattr(params, 'module_type', '?')}) is "
                                  f"not explained yet; explain covers quantized Conv1d/2d/3d, ConvTranspose1d/2d/3d "
                                  f"and Linear (and their ReLU fusions)")
    if getattr(params, "engine", "fbgemm") not in ("fbgemm", "onednn"):
        raise NotImplementedError(f"explain: engine {params.engine!r} is not explained (fbgemm or onednn)")
    return params, module


def _as_conv2d(p: Any, qx: Any, index: Any, input_scale: Any, input_zero_point: Any) -> tuple:
    """A LinearParams / Conv1dParams as the Conv2dParams fbgemm effectively runs, with the input as a
    uint8 (N, C, 1, L) array and the index as (n, c, 0, l)."""
    if is_torch_tensor(qx):
        if not qx.is_quantized:
            raise TypeError(f"explain: qx is a torch tensor of dtype {qx.dtype}; expected a quint8 quantized tensor")
        input_scale, input_zero_point = float(qx.q_scale()), int(qx.q_zero_point())
        qx = qx.int_repr().numpy()
    if not isinstance(qx, np.ndarray) or qx.dtype != np.uint8:
        raise TypeError(f"explain: qx must be a quint8 torch tensor or a uint8 numpy array, got {type(qx).__name__}")
    nd = qx.ndim
    lead: tuple = ()
    if p.kind == "linear":
        if nd < 2:
            raise ValueError(f"explain: a Linear layer's input has shape {qx.shape}; expected (..., in_features) "
                             f"with at least 2 dimensions")
        # torch flattens the leading dimensions into rows (qlinear.cpp): explain row m of (M, K)
        lead = qx.shape[:-1]
        x4 = qx.reshape(-1, qx.shape[-1])[:, :, None, None]
        w4 = p.weight[:, :, None, None]
        geo: dict = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, padding_mode="zeros")
    else:
        if nd != 3:
            raise ValueError(f"explain: a Conv1d layer's input has shape {qx.shape}; expected (N, C, L)")
        x4 = qx[:, :, None, :]
        w4 = p.weight[:, :, None, :]
        geo = dict(stride=(1, p.stride[0]), padding=(0, p.padding[0]), dilation=(1, p.dilation[0]),
                   groups=p.groups, padding_mode=p.padding_mode)
    # a flat index means the same element in (N, O, L) and (N, O, 1, L)
    if isinstance(index, str):
        index = [int(v) for v in index.replace(" ", "").split(",") if v]
    if not (isinstance(index, (int, np.integer)) and not isinstance(index, bool)):
        idx = tuple(int(v) for v in index)
        if len(idx) != nd:
            raise ValueError(f"explain: index={idx} has {len(idx)} entries (must be {nd} for this layer's output)")
        if p.kind == "linear":
            if any(not 0 <= v < d for v, d in zip(idx[:-1], lead)):
                raise ValueError(f"explain: index={idx} is outside the output's leading dimensions {tuple(lead)}")
            index = (int(np.ravel_multi_index(idx[:-1], lead)), idx[-1], 0, 0)
        else:
            index = (idx[0], idx[1], 0, idx[2])
    c2 = Conv2dParams(weight=np.ascontiguousarray(w4), weight_scale=p.weight_scale,
                      weight_zero_point=p.weight_zero_point, per_channel=p.per_channel, bias=p.bias,
                      output_scale=p.output_scale, output_zero_point=p.output_zero_point, relu=p.relu,
                      module_type=p.module_type, engine=getattr(p, "engine", "fbgemm"),
                      onednn_kernel=getattr(p, "onednn_kernel", ""), **geo)
    return c2, np.ascontiguousarray(x4), index, input_scale, input_zero_point, nd


def _checked_input(qx: Any, input_scale: Any, input_zero_point: Any) -> tuple:
    """explain's input, checked before anything runs: a quint8 tensor (its own quantization), or a
    uint8 array with a valid input_scale / input_zero_point (the same rules as conv2d's)."""
    fn = "explain"
    if is_torch_tensor(qx):
        check_quint8_activation(fn, "qx", qx)
        return input_scale, input_zero_point
    if not isinstance(qx, np.ndarray):
        raise TypeError(f"{fn}: qx has type {type(qx).__name__} (must be a quint8 torch tensor or a uint8 numpy "
                        f"array)")
    if qx.dtype != np.uint8:
        raise TypeError(f"{fn}: qx.dtype={qx.dtype} (must be uint8; qref never casts silently)")
    if input_scale is None or input_zero_point is None:
        raise ValueError(f"{fn}: input_scale={input_scale!r}, input_zero_point={input_zero_point!r} (both are "
                         f"required when qx is a uint8 array)")
    return (check_scale(fn, "input_scale", input_scale),
            check_int(fn, "input_zero_point", input_zero_point, 0, 255, "uint8 activations: must be in [0, 255]"))


def _input_uint8(params, qx: Any, input_scale: Any, input_zero_point: Any):
    """(uint8 NCHW array after the module's own padding, a_scale, a_zp, padding, torch input or None)."""
    x, s, z, pad = params.prepare_input(qx, input_scale, input_zero_point)
    if is_torch_tensor(x):
        import torch

        if not x.is_quantized or x.dtype != torch.quint8:
            raise TypeError(f"explain: qx is a torch tensor of dtype {x.dtype}; expected a quint8 quantized tensor")
        if x.dim() != 4:
            raise ValueError(f"explain: qx has shape {tuple(x.shape)}, expected 4 dimensions (N, C, H, W)")
        return x.int_repr().numpy(), float(x.q_scale()), int(x.q_zero_point()), pad
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        raise TypeError(f"explain: qx must be a quint8 torch tensor or a uint8 numpy array (N, C, H, W), got "
                        f"{type(x).__name__}{'' if not isinstance(x, np.ndarray) else f' {x.dtype} {x.shape}'}")
    if s is None or z is None:
        raise ValueError("explain: input_scale and input_zero_point are required when qx is a uint8 array")
    return x, float(s), int(z), pad


def _receptive_field(xin: np.ndarray, wt: np.ndarray, n: int, o: int, g: int, oh: int, ow: int, stride: tuple,
                     pad: tuple, dilation: tuple, pad_value: int) -> list:
    """The taps of output (n, o, oh, ow) of group g in fbgemm's per-group K order (kh, kw, c);
    a tap outside the image holds ``pad_value``."""
    H, W = xin.shape[2:]
    Cg, KH, KW = wt.shape[1:]
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    taps: list = []
    for kh in range(KH):
        ih = oh * sh - ph + kh * dh
        for kw in range(KW):
            iw = ow * sw - pw + kw * dw
            inside = 0 <= ih < H and 0 <= iw < W
            for c in range(Cg):
                a = int(xin[n, g * Cg + c, ih, iw]) if inside else pad_value
                wv = int(wt[o, c, kh, kw])
                taps.append(Tap(len(taps), kh, kw, g * Cg + c, ih, iw, not inside, a, wv, a * wv))
    return taps


def _index_entries(index: Any, shape: tuple, form: str) -> tuple:
    """The entries of ``index`` as a tuple of ints: a flat int (checked against ``shape`` and unravelled),
    a "n,c,..." string or an iterable of ints (not yet checked against ``shape``)."""
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        total = int(np.prod(shape))
        if not 0 <= int(index) < total:
            raise ValueError(f"explain: index={index} is out of range (flat index into the output of shape "
                             f"{shape}: must be in [0, {total}))")
        return tuple(int(v) for v in np.unravel_index(int(index), shape))
    if isinstance(index, str):
        index = [int(v) for v in index.replace(" ", "").split(",") if v]
    try:
        return tuple(int(v) for v in index)
    except TypeError:
        raise TypeError(f"explain: index must be {form} or a flat int, got {type(index).__name__}") from None


def _parse_index(index: Any, shape: tuple) -> tuple:
    idx = _index_entries(index, shape, "(n, c, h, w)")
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return idx
    if len(idx) != 4:
        raise ValueError(f"explain: index={idx} has {len(idx)} entries (must be (n, c, h, w) of the output)")
    for v, d, name in zip(idx, shape, "nchw"):
        if not 0 <= v < d:
            raise ValueError(f"explain: index={idx} is out of range for output shape {shape} "
                             f"({name}={v} must be in [0, {d}))")
    return idx


def explain(module_or_params: Any, qx: Any, index: Any, isa: str = "auto", *, input_scale: Any = None,
            input_zero_point: Any = None, layer: str = "") -> Explanation:
    """Derive output element ``index`` = (n, c, h, w) of a quantized conv step by step.

    ``module_or_params``: a torch quantized ``Conv2d`` / ``ConvReLU2d`` or a ``qref.Conv2dParams``;
    also ``Linear``, ``Conv1d``, ``Conv3d`` (index (n, c, d, h, w)) and ``ConvTranspose1d/2d/3d``
    (and their ReLU fusions) or the params ``qref.from_torch`` returns for them.
    ``qx``: the conv's quint8 input tensor (or a uint8 array with ``input_scale``/``input_zero_point``).
    ``isa``: whose fbgemm arithmetic (``"auto"``: torch in this process; ``"avx2"``; ``"vnni"``).
    """
    if _onnx.is_onnx_model(module_or_params):  # qref.onnx.explain(model, feeds, output, index)
        return _onnx.explain(module_or_params, qx, index, isa)
    params, module = _as_params(module_or_params)
    check_choice("explain", "isa", isa, ISAS if getattr(params, "engine", "fbgemm") == "fbgemm"
                 else ISAS + ("amx", "avx512_core", "sse41"))
    index = check_index("explain", index)
    input_scale, input_zero_point = _checked_input(qx, input_scale, input_zero_point)
    torch_out = None
    if module is not None and is_torch_tensor(qx):
        torch_out = module(qx).int_repr().numpy()
        if getattr(params, "engine", "fbgemm") == "onednn" and isa == "auto" and hasattr(params, "onednn_kernel"):
            # as qref.check: the kernel torch's oneDNN runs for this input (docs/onednn-layers.md)
            params = _with_onednn_kernel(params, module, qx)
    if getattr(params, "kind", "") in ("conv3d", "conv_transpose"):
        return _explain_nd(params, torch_out, qx, index, isa, input_scale, input_zero_point, layer)
    orig_ndim = None
    if not isinstance(params, Conv2dParams):
        # Linear and Conv1d run through fbgemm's conv machinery as 1x1 / (1, k) convs (qlinear.cpp,
        # qconv.cpp QConv1dInt8): explain them as that conv2d.
        is_linear = getattr(params, "kind", "") == "linear"
        params, qx, index, input_scale, input_zero_point, orig_ndim = _as_conv2d(
            params, qx, index, input_scale, input_zero_point)
        if torch_out is not None:  # the same elements, in the conv2d layout explained
            torch_out = (torch_out.reshape(-1, torch_out.shape[-1], 1, 1) if is_linear
                         else torch_out.reshape(torch_out.shape[0], torch_out.shape[1], 1, -1))
    xin, a_scale, a_zp, pad = _input_uint8(params, qx, input_scale, input_zero_point)
    N, C, H, W = xin.shape
    wt = params.weight
    O, Cg, KH, KW = wt.shape
    G = params.groups
    if Cg * G != C:
        raise ValueError(f"explain: the layer takes {Cg * G} input channels ({Cg} per group x groups={G}) but qx "
                         f"has {C} (input channels must equal groups * weight channels)")
    sh, sw = params.stride
    ph, pw = pad
    dh, dw = params.dilation
    OH = (H + 2 * ph - (dh * (KH - 1) + 1)) // sh + 1
    OW = (W + 2 * pw - (dw * (KW - 1) + 1)) // sw + 1
    n, o, oh, ow = _parse_index(index, (N, O, OH, OW))
    if getattr(params, "engine", "fbgemm") == "onednn":
        return _explain_onednn(params, torch_out, xin, a_scale, a_zp, (ph, pw), (n, o, oh, ow), isa, layer)
    plan = conv_plan((N, C, H, W), (O, Cg, KH, KW), (sh, sw), (ph, pw), (dh, dw), G, isa)

    Og = O // G
    g = o // Og
    # 1. the receptive field in (kh, kw, c) order; padded taps hold a_zp (fbgemm's im2col memset).
    taps = _receptive_field(xin, wt, n, o, g, oh, ow, params.stride, pad, params.dilation, a_zp)
    # 2-7. products and int16 pairs, zero-point terms, float32 requantization, rounding, clamp
    return _fbgemm_explanation(params, taps, plan, wt, o, g, (n, o, oh, ow), a_scale, a_zp, layer,
                               None if torch_out is None else int(torch_out[n, o, oh, ow]))


# ---------------------------------------------------------------------------- hand formulas


def _clamp(v: int, e: dict) -> int:
    return min(max(int(v), e["low"]), 255)


def _round_half_even(v: float) -> int:
    return int(np.rint(v))


def _hand_formulas(e: dict) -> list:
    """The usual hand computations, each changing one thing from fbgemm's arithmetic."""
    out = []
    v = e["value"]
    raw, acc_exact = e["raw"], e["acc_exact"]
    raw_exact = raw - e["acc"] + acc_exact  # the raw integer without int16 saturation
    bias = e["bias"] or 0.0
    zp = e["output_zero_point"]
    a_s, w_s, o_s = e["input_scale"], e["weight_scale"], e["output_scale"]

    def real(a: float, w: float, os_: float, r: int) -> float:
        # the textbook real-number formula: (s_in * s_w * sum((a - a_zp) * (w - w_zp)) + bias) / s_out
        with np.errstate(all="ignore"):
            return float((np.float64(a) * np.float64(w) * r + bias) / np.float64(os_))

    def final(y: float) -> Optional[int]:
        return _clamp(_round_half_even(y) + zp, e) if math.isfinite(y) and abs(y) < 2**31 else None

    def rel(p: float, t: float) -> str:
        return f"{p:g} for {_f32(t)} ({(p - t) / t * 100:+.2f}%)"

    n_sat = len(e["saturated_pairs"])

    def saturation_note(scales: tuple, val: int) -> str:
        # a hand formula sums the exact products; would fbgemm's saturated sum have fixed it?
        if not n_sat or val == v:
            return ""
        alt = final(real(scales[0], scales[1], scales[2], raw))
        if alt == v:
            return (f"; the cause is saturation: it sums the products exactly ({acc_exact}) where fbgemm "
                    f"saturated {n_sat} int16 pair(s) ({e['acc']})")
        return f"; it also misses {n_sat} saturated int16 pair(s)"

    # 1. Printed scales: what print(model) shows (4 decimals), in the real-number formula.
    pa, pw, po = _printed(a_s), _printed(w_s), _printed(o_s)
    yp = real(pa, pw, po, raw_exact)
    val = final(yp)
    if val is not None and min(pa, pw, po) > 0:
        if (pa, pw, po) == (float(np.float32(a_s)), float(np.float32(w_s)), float(np.float32(o_s))):
            why = "print(model) shows these scales exactly"
        else:
            why = (f"print(model) shows the scales rounded: s_in {rel(pa, a_s)}, s_w {rel(pw, w_s)}, s_out "
                   f"{rel(po, o_s)}; the value before rounding becomes {yp:.6f} instead of {e['y']:.6f}")
            why += " (here it still rounds the same way)" if val == v else ""
        why += saturation_note((pa, pw, po), val)
        out.append(HandFormula("printed scales", "round((s_in*s_w*acc + bias) / s_out) + zp with 4-digit scales",
                               val, val == v, why))
    # 2. Full scales, but the real-number formula in double (no float32 steps).
    full = (float(np.float32(a_s)), float(np.float32(w_s)), float(np.float32(o_s)))
    yd = real(*full, raw_exact)
    val = final(yd)
    if val is not None:
        why = f"in double the value is {yd!r}; fbgemm's float32 steps give {_f32(e['y'])}"
        note = saturation_note(full, val)
        if val != v and not note.startswith("; the cause"):
            why += ": the two land on different sides of a rounding boundary"
        out.append(HandFormula("double, real-number formula", "round((s_in*s_w*acc + bias) / s_out) + zp in "
                               "float64", val, val == v, why + note))
    # 3. fbgemm's order of operations, but in double instead of float32.
    with np.errstate(all="ignore"):
        S64 = np.float64(np.float32(a_s)) * np.float64(np.float32(w_s))
        M64 = S64 / np.float64(np.float32(o_s))
        y64 = float((raw + (np.float64(bias) / S64 if e["bias"] is not None else 0.0)) * M64)
    if math.isfinite(y64) and abs(y64) < 2**31:
        v64 = _clamp(_round_half_even(y64) + zp, e)
        out.append(HandFormula("double instead of float32", "(raw + bias/S) * M with S, M, the bias term in float64",
                               v64, v64 == v, f"pre-rounding value {y64!r} vs float32 {_f32(e['y'])}"
                               + ("" if v64 == v else ": the float32 roundings of S, M and the bias term matter here")))
    # 4. Bias rounded to an integer and added to the accumulator (gemmlowp/TFLite style int32 bias).
    if e["bias"] is not None:
        with np.errstate(all="ignore"):
            bq = _round_half_even(float(np.float32(bias) / np.float32(e["S"])))
            y = np.float32(np.float32(_wrap32(raw + bq)) * np.float32(e["M"]))
        val = _clamp(_cvtps2dq(y) + zp, e)
        out.append(HandFormula("bias rounded to int32", "(raw + round(bias/S)) * M",
                               val, val == v, f"round(bias/S) = {bq}, but fbgemm adds the float bias term "
                               f"{_f32(e['bias_term'])} in float32 (PyTorch passes a float bias; docs/numerics.md §2.2)"
                               + (": here the difference does not change the result" if val == v else "")))
    # 5. Round half up instead of half to even.
    y = e["y"]
    if math.isfinite(y) and abs(y) < 2**31:
        val = _clamp(math.floor(y + 0.5) + zp, e)
        why = ("y is exactly a tie (.5): cvtps2dq rounds half to even, floor(y + 0.5) rounds up" if e["tie"]
               else "y is not a tie here, so both roundings agree")
        out.append(HandFormula("round half up", "floor(y + 0.5) + zp", val, val == v, why))
    # 6. Ignoring saturation: exact products where fbgemm saturates int16 pairs.
    if e["saturated_pairs"] or e["saturates"]:
        with np.errstate(all="ignore"):
            yf = np.float32(raw_exact)
            if e["bias_term"] is not None:
                yf = (fma_f32(e["bias"], e["reciprocal"], yf) if e["reciprocal"] is not None
                      else np.float32(yf + np.float32(e["bias_term"])))
            y = np.float32(yf * np.float32(e["M"]))
        val = _clamp(_cvtps2dq(y) + zp, e)
        n = len(e["saturated_pairs"])
        why = (f"{n} int16 pair sum(s) saturate on this path (vpmaddubsw); exact sum {acc_exact} vs "
               f"fbgemm's {e['acc']}" if n else "the path saturates int16 pairs, but no pair of this element "
               "exceeds [-32768, 32767]")
        out.append(HandFormula("ignoring saturation", "exact sum of products, then fbgemm's float32 steps",
                               val, val == v, why))
    return out


# ---------------------------------------------------------------------------- rendering


def _fmt_taps(e: Explanation, limit: int = 12) -> list:
    lines = []
    sat_k = {p.k0 for p in e.saturated_pairs} | {p.k1 for p in e.saturated_pairs if p.k1 is not None}
    show = list(range(min(limit, e.K)))
    show += [k for k in sorted(sat_k) if k >= limit][: limit]
    three = e.kind in ("Conv3d", "ConvTranspose3d")
    lines.append("    k  (kd,kh,kw,c)   input (d,h,w)     a  x    w  = product" if three else
                 "    k  (kh,kw,c)   input (h,w)     a  x    w  = product")
    prev = -1
    for k in show:
        t = e.taps[k]
        if k != prev + 1:
            lines.append("    ...")
        no_input = "no input" if e.kind.startswith("ConvTranspose") else "padding"
        where = ((f"{no_input}: skip" if e.engine == "onednn" else f"{no_input} (a_zp)") if t.padded
                 else f"({t.id},{t.ih},{t.iw})" if three else f"({t.ih},{t.iw})")
        mark = "  <- saturated pair" if k in sat_k else ""
        khkwc = f"({t.kd},{t.kh},{t.kw},{t.c})" if three else f"({t.kh},{t.kw},{t.c})"
        lines.append(f"  {k:3d}  {khkwc:<{14 if three else 11}s} {where:<{16 if three else 14}s} {t.a:3d} x "
                     f"{t.w:4d} = {t.product:6d}{mark}")
        prev = k
    if show and show[-1] != e.K - 1:
        lines.append(f"    ... ({e.K} taps in all)")
    return lines


def _summary(e: Explanation) -> str:
    bias = "" if e.bias_term is None else f" + {_f32(e.bias_term)}"
    s = (f"fbgemm computes y = f32(f32({e.raw}{bias}) * {_f32(e.M)}) = {_f32(e.y)} in float32, rounds it "
         f"half to even to {e.rounded if e.rounded != INT32_MIN else 'INT32_MIN'}, adds the zero point "
         f"{e.output_zero_point} and clamps: {e.value}.")
    wrong = [h for h in e.hand if not h.matches]
    if wrong:
        s += " A hand computation gets " + "; ".join(
            f"{h.value} with {h.name}" for h in wrong) + " (details at the end)."
    else:
        s += " The usual hand formulas all agree on this element."
    return s


def _render(e: Explanation) -> str:
    n, o = e.index[:2]
    L = []
    torch_says = ""
    if e.torch_value is not None:
        torch_says = f"   (torch says {e.torch_value})"
        if not e.isa.startswith("auto"):
            torch_says = (f"   (torch in this process says {e.torch_value}: it runs this CPU's arithmetic, "
                          f"this derivation the {e.isa} host's)")
    where = ", ".join(f"{k}={v}" for k, v in zip(("d", "h", "w")[3 - (len(e.index) - 2):], e.index[2:]))
    L.append(f"Output element (n={n}, c={o}, {where}) of {e.layer} = {e.value}{torch_says}")
    if e.kind.startswith("ConvTranspose"):
        L.append(f"{e.kind}: output position o reads, per dim, input (o + pad - k*dil) / stride where that is an "
                 f"integer inside the input; every other tap has no input"
                 + (" (fbgemm's direct path leaves those out: column offsets and row sum over the taps that reach "
                    "this position)" if e.path == "direct" else ""))
    if e.engine == "onednn":
        L.append((e.onednn or {}).get("plan", "oneDNN"))
        L.append("")
        L.append("In short: this layer's weights were packed for oneDNN (engine 'x86' on an AVX512-VNNI host, or "
                 "'onednn'), whose formula differs from fbgemm's: bias after scaling, zero point before rounding.")
        L.append("")
        L += _render_onednn(e)
        L.append("")
        L.append("How the usual hand formulas do on this element:")
        w = max((len(h.name) for h in e.hand), default=0)
        for h in e.hand:
            L.append(f"  {h.name:<{w}s}  {h.value:3d}  {'same' if h.matches else 'DIFFERENT':<9s}  {h.why}")
        return "\n".join(L)
    L.append(f"fbgemm {e.path} path on isa {e.isa}: "
             + ("int16-saturating pair sums (vpmaddubsw)" if e.saturates else "exact int32 products"))
    L.append("")
    L.append("In short: " + _summary(e))
    L.append("")
    order = "(kd, kh, kw, c)" if e.kind in ("Conv3d", "ConvTranspose3d") else "(kh, kw, c)"
    L.append(f"1. Receptive field (group {e.group}, K = {e.K} terms in fbgemm's {order} order):")
    L += _fmt_taps(e)
    L.append("")
    L.append(f"2. Integer accumulator: acc = {e.acc}" + ("" if e.acc == e.acc_exact else
                                                          f"   (exact sum of products: {e.acc_exact})"))
    if e.saturated_pairs:
        L.append(f"   {len(e.saturated_pairs)} pair(s) saturate to int16 (vpmaddubsw):")
        for p in e.saturated_pairs[:8]:
            ks = f"k={p.k0},{p.k1}" if p.k1 is not None else f"k={p.k0} (+0)"
            L.append(f"     {ks} taps {p.taps}: exact {p.exact} -> saturated {p.saturated} (lost {p.lost})")
        if len(e.saturated_pairs) > 8:
            L.append(f"     ... {len(e.saturated_pairs) - 8} more")
    elif e.saturates:
        L.append("   (this path saturates int16 pairs, but no pair of this element leaves [-32768, 32767])")
    L.append("")
    L.append("3. Zero points (int32):")
    L.append(f"   input zero point a_zp = {e.input_zero_point}, weight zero point w_zp = {e.weight_zero_point}")
    L.append(f"   colsum(w[{o}]) = {e.colsum}; col_offset = colsum - w_zp*K = {e.col_offset}")
    L.append(f"   raw = acc - a_zp*col_offset - rowsum*w_zp = {e.acc} - {e.a_zp_term} - {e.w_zp_term}"
             f" (rowsum {e.rowsum}) = {e.raw}")
    L.append("")
    L.append("4. Scales, narrowed to float32 as torch hands them to fbgemm:")
    L.append(f"   input scale  {e.input_scale!r} -> a = {_f32(e.a_f)}  ({_f32_hex(e.a_f)})")
    L.append(f"   weight scale {e.weight_scale!r} -> w = {_f32(e.w_f)}  ({_f32_hex(e.w_f)})"
             + ("  [per-channel]" if e.per_channel else "  [per-tensor]"))
    L.append(f"   output scale {e.output_scale!r} -> s_out = {_f32(e.o_f)}  ({_f32_hex(e.o_f)})")
    L.append(f"   S = f32(a*w) = {_f32(e.S)};  multiplier M = f32(S / s_out) = {_f32(e.M)}  ({_f32_hex(e.M)})")
    L.append("")
    if e.bias is None:
        L.append("5. No bias.")
        L.append(f"   y = f32(float(raw) * M) = {_f32(e.y)}")
    else:
        if e.per_channel:
            L.append(f"5. Bias {_f32(e.bias)}, per-channel weights: bias term = f32(bias / S) = {_f32(e.bias_term)}")
        else:
            L.append(f"5. Bias {_f32(e.bias)}, per-tensor weights: multiplied by R = f32(1/(double)S) = "
                     f"{_f32(e.reciprocal)} inside one fused multiply-add (fbgemm's mul+add is contracted to vfmadd)")
            L.append(f"   (bias * R alone would round to {_f32(e.bias_term)}; fbgemm never rounds it separately)")
        if e.per_channel:
            L.append(f"   f32(float(raw) + bias term) = f32({e.raw} + {_f32(e.bias_term)}) = {_f32(e.yf)}")
        else:
            L.append(f"   fma(bias, R, float(raw)) = f32({_f32(e.bias)} * {_f32(e.reciprocal)} + {e.raw}) = {_f32(e.yf)}")
        L.append(f"   y = f32(that * M) = {_f32(e.y)}  ({_f32_hex(e.y)})")
    L.append("")
    if e.rounded == INT32_MIN:
        L.append(f"6. |y| >= 2^31: cvtps2dq returns INT32_MIN, which saturates to the low clamp ({e.low}).")
    else:
        L.append(f"6. Rounding (cvtps2dq, half to even): {_f32(e.y)} -> {e.rounded}"
                 + ("   <- an exact tie: half to even" if e.tie else ""))
    L.append(f"7. + output zero point {e.output_zero_point} = {e.unclamped}; clamp to [{e.low}, 255]"
             + (" (ReLU fused: low = zero point)" if e.relu else "") + f" -> {e.value}")
    L.append("")
    L.append("How the usual hand formulas do on this element:")
    w = max((len(h.name) for h in e.hand), default=0)
    for h in e.hand:
        mark = "same" if h.matches else "DIFFERENT"
        L.append(f"  {h.name:<{w}s}  {h.value:3d}  {mark:<9s}  {h.why}")
    return "\n".join(L)


# ---------------------------------------------------------------------------- oneDNN


def _explain_onednn(params: Any, torch_out: Optional[np.ndarray], xin: np.ndarray, a_scale: float, a_zp: int,
                    pad: tuple,
                    index: tuple, isa: str, layer: str) -> Explanation:
    """torch's x86/onednn engine (docs/numerics.md §6, csrc/qref/onednn/requant.h): padded taps are skipped (the zero
    point is compensated over the real taps only), bias added after scaling, ReLU as max(y, 0),
    output zero point added in float before rounding, scales through reciprocal round trips."""
    N, C, H, W = xin.shape
    wt = params.weight
    O, Cg, KH, KW = wt.shape
    G = params.groups
    sh, sw = params.stride
    ph, pw = pad
    dh, dw = params.dilation
    n, o, oh, ow = index
    if not bool(np.all(params.weight_zero_point == 0)):
        raise ValueError("explain: oneDNN needs symmetric weights (all zero points 0)")
    pl = od.plan(wt.shape, G, (sh, sw), (ph, pw), (dh, dw), isa, getattr(params, "onednn_kernel", "") or None,
                 batch=N)
    Og = O // G
    g = o // Og
    K = KH * KW * Cg
    # padded taps hold 0, so their product is 0
    taps = _receptive_field(xin, wt, n, o, g, oh, ow, (sh, sw), (ph, pw), (dh, dw), 0)
    acc = acc_exact = colsum = 0
    sat_pairs = []
    for base in range(0, K, Cg):  # one (kh, kw) position: Cg consecutive taps
        if taps[base].padded:
            continue  # oneDNN: no product and no compensation for a padded tap
        for c in range(0, Cg, 2):  # channel pairs (2i, 2i+1) of one tap (vpmaddubsw kernels)
            t0 = taps[base + c]
            t1 = taps[base + c + 1] if c + 1 < Cg else None
            pr = t0.product + (t1.product if t1 else 0)
            sv = _sat16(pr) if pl.saturates else pr
            if sv != pr:
                members = (t0,) + ((t1,) if t1 else ())
                sat_pairs.append(SaturatedPair(t0.k, t1.k if t1 else None,
                                               tuple((t.kh, t.kw, t.c) for t in members), pr, sv))
            acc += sv
            acc_exact += pr
            colsum += t0.w + (t1.w if t1 else 0)
    acc32, col32 = _wrap32(acc), _wrap32(colsum)
    i = o if params.per_channel else 0
    comp = "float" if pl.float_compensation else "int32"
    # oneDNN's requantization of this element, every step, in the core (csrc/qref/onednn/requant.h)
    st = _core.onednn_requant_steps(acc32, col32, a_zp, bool(pl.float_compensation), float(params.weight_scale[i]),
                                    None if params.bias is None else float(params.bias[o]), float(a_scale),
                                    float(params.output_scale), int(params.output_zero_point), bool(params.relu),
                                    bool(pl.combined_scale), bool(pl.divide_dst))
    f = np.float32
    ss, inv, ws, comb, A = f(st["ss"]), f(st["inv"]), f(st["ws"]), f(st["comb"]), f(st["A"])
    scaled, yb, yr, yi, y = f(st["scaled"]), f(st["with_bias"]), f(st["after_relu"]), f(st["dst_scaled"]), f(st["y"])
    bias = None if params.bias is None else f(st["bias"])
    yc = float(st["clamped"])
    value = int(st["value"])
    tie = bool(np.isfinite(y) and float(y) - math.floor(float(y)) == 0.5)
    torch_value = None
    if torch_out is not None:
        torch_value = int(torch_out[n, o, oh, ow])
    steps = dict(kernel=pl.kernel, plan=str(pl), isa_class=pl.isa, combined_scale=pl.combined_scale,
                 compensation=comp, ss=float(ss), inv=float(inv), ws=float(ws), comb=float(comb), A=float(A),
                 scaled=float(scaled), with_bias=float(yb), after_relu=float(yr), times_inv=float(yi),
                 with_zero_point=float(y), clamped=yc)
    exp = dict(index=index, layer=layer or params.module_type, path=pl.kernel, saturates=pl.saturates,
               isa=f"auto({pl.isa})" if isa == "auto" else pl.isa, group=g, taps=tuple(taps), acc=acc32,
               acc_exact=acc_exact,
               saturated_pairs=tuple(sat_pairs), rowsum=sum(t.a for t in taps if not t.padded), K=K, colsum=col32,
               col_offset=col32, input_zero_point=a_zp, weight_zero_point=0, a_zp_term=_wrap32(a_zp * col32),
               w_zp_term=0, raw=_wrap32(acc32 - _wrap32(a_zp * col32)), input_scale=a_scale,
               weight_scale=float(params.weight_scale[i]), output_scale=float(params.output_scale),
               a_f=float(ss), w_f=float(ws), o_f=float(f(params.output_scale)), S=float(comb), M=float(inv),
               per_channel=params.per_channel, bias=None if bias is None else float(bias),
               bias_term=None if bias is None else float(bias), reciprocal=None, yf=float(A), y=float(y), tie=tie,
               rounded=value, output_zero_point=params.output_zero_point, relu=params.relu,
               low=0, unclamped=int(np.rint(float(y))) if np.isfinite(y) and abs(float(y)) < 2**31 else INT32_MIN,
               value=value, torch_value=torch_value, engine="onednn", onednn=steps)
    exp["hand"] = tuple(_hand_formulas_onednn(exp, params, xin, pad))
    return Explanation(**exp)


def _hand_formulas_onednn(e: dict, params: Any, xin: np.ndarray, pad: tuple) -> list:
    out = []
    v = e["value"]
    f = np.float32
    bias = e["bias"] or 0.0
    zp = e["output_zero_point"]
    raw_exact = e["raw"] - e["acc"] + e["acc_exact"]
    a_s, w_s, o_s = e["input_scale"], e["weight_scale"], e["output_scale"]

    def final(y: float) -> Optional[int]:
        if not math.isfinite(y) or abs(y) >= 2**31:
            return None
        r = int(np.rint(y)) + zp
        return min(max(r, zp if params.relu else 0), 255)

    with np.errstate(all="ignore"):
        yp = float((np.float64(_printed(a_s)) * _printed(w_s) * raw_exact + bias) / np.float64(_printed(o_s)))
        yd = float((np.float64(f(a_s)) * np.float64(f(w_s)) * raw_exact + bias) / np.float64(f(o_s)))
    for name, y, why in (
            ("printed scales", yp, "print(model) shows the scales with 4 digits"),
            ("double, real-number formula", yd, "oneDNN computes in float32 with reciprocal round trips of the "
                                                "scales and adds the zero point before rounding")):
        val = final(y)
        if val is not None:
            out.append(HandFormula(name, "round((s_in*s_w*acc + bias) / s_out) + zp", val, val == v,
                                   f"value before rounding {y:.6f} vs oneDNN's {e['y'] - zp:.6f} (+ zp); " + why))
    # fbgemm's formula on the same layer: what engine='fbgemm' would give
    try:
        fb = replace(params, engine="fbgemm", padding_mode="zeros", padding=pad)
        ef = explain(fb, xin, e["index"], isa="vnni" if e["onednn"]["isa_class"] in ("amx", "vnni") else "avx2",
                     input_scale=a_s, input_zero_point=e["input_zero_point"])
        out.append(HandFormula("fbgemm's formula", "f32(f32(raw + bias/S) * M), zero point after rounding",
                               ef.value, ef.value == v, "the commonly quoted formula is fbgemm's (engine 'fbgemm'); "
                               "this layer was packed for oneDNN (engine 'x86' on a VNNI host), which adds the bias "
                               "after scaling and the zero point before rounding"))
    except (ValueError, TypeError, NotImplementedError):
        pass
    y = e["y"]
    if math.isfinite(y) and 0 <= y <= 255:
        val = int(math.floor(y + 0.5))
        out.append(HandFormula("round half up", "floor(y + 0.5)", val, val == v,
                               "y is exactly a tie (.5): oneDNN rounds half to even" if e["tie"]
                               else "y is not a tie here, so both roundings agree"))
    return out


def _render_onednn(e: Explanation) -> list:
    d = e.onednn or {}
    L = []
    L.append(f"1. Receptive field (group {e.group}, K = {e.K}; oneDNN skips padded taps):")
    L += _fmt_taps(e)
    L.append("")
    L.append(f"2. Integer accumulator over the real taps: acc = {e.acc}"
             + ("" if e.acc == e.acc_exact else f"   (exact sum of products: {e.acc_exact})"))
    for p in e.saturated_pairs[:8]:
        L.append(f"   channel pair k={p.k0},{p.k1} taps {p.taps}: exact {p.exact} -> saturated {p.saturated}")
    L.append(f"   colsum over the same taps = {e.colsum}")
    L.append("")
    if d.get("compensation") == "float":
        L.append(f"3. Zero-point compensation in float (AMX micro-kernel): A = f32(f32({e.acc}) + "
                 f"f32({-e.colsum} * {e.input_zero_point})) = {_f32(d['A'])}")
    elif d.get("compensation") == "ref_deconv":
        L.append(f"3. Zero-point compensation as ref_deconvolution does it: colsum over all taps {d['colsum_all']}; "
                 f"A = f32(int32(trunc(f32(f32(acc) - f32(a_zp*{d['colsum_all']})))) + a_zp*(colsum outside the "
                 f"input)) = {_f32(d['A'])}")
    else:
        L.append(f"3. Zero-point compensation in int32: A = float(acc - a_zp*colsum) = float({e.acc} - "
                 f"{e.a_zp_term}) = {_f32(d['A'])}")
    L.append("")
    L.append("4. Scales (PyTorch hands oneDNN reciprocals; ideep inverts them again):")
    L.append(f"   src scale  {e.input_scale!r} -> ss = f32(1/f32(1/(double)s)) = {_f32(d['ss'])}")
    L.append(f"   weight scale {e.weight_scale!r} -> ws = {_f32(d['ws'])}")
    L.append(f"   dst scale {e.output_scale!r} -> inv = f32(1/f32(1/f32(1/(double)s))) = {_f32(d['inv'])}")
    if d.get("combined_scale"):
        L.append(f"   y = f32(A * f32(ss*ws)) = f32({_f32(d['A'])} * {_f32(d['comb'])}) = {_f32(d['scaled'])}")
    else:
        L.append(f"   y = f32(f32(A * ss) * ws) = {_f32(d['scaled'])}")
    L.append("")
    if e.bias is not None:
        L.append(f"5. Bias added after scaling, in real units: f32(y + {_f32(e.bias)}) = {_f32(d['with_bias'])}")
    else:
        L.append("5. No bias.")
    if e.relu:
        L.append(f"   ReLU (max(y, 0)) = {_f32(d['after_relu'])}")
    L.append(f"6. {'f32(y / dst scale)' if d.get('divide_dst') else 'f32(y * inv)'} = {_f32(d['times_inv'])}; "
             f"+ output zero point in float = "
             f"{_f32(d['with_zero_point'])}  ({_f32_hex(d['with_zero_point'])})")
    L.append(f"7. Clamp to [0, 255] in float, then round half to even: {_f32(d['clamped'])} -> {e.value}"
             + ("   <- an exact tie: half to even" if e.tie else ""))
    return L


def explain_many(module_or_params: Any, qx: Any, indices: Sequence, isa: str = "auto", **kw: Any) -> list:
    """``explain`` for several indices (convenience for tools)."""
    return [explain(module_or_params, qx, i, isa=isa, **kw) for i in indices]


# ---------------------------------------------------------------------------- Conv3d and transposed convs
#
# The same derivation for the other conv layers (qref.layers.conv_nd), following the normative
# N-d reference loops: csrc/qref/fbgemm/kernels/conv_nd_scalar.cc (fbgemm's gather kernel: the
# receptive field in (kd, kh, kw, c) order, taps without input holding a_zp, pairs (2i, 2i+1)
# saturated on the saturating paths, requant.h) and csrc/qref/onednn/conv_nd.cc (oneDNN: only the
# real taps, exact int32, one of three compensation chains, requant.h). A transposed conv's output
# o reads, along each dim, input (o + pad - k*dil) / stride where that divides and lies inside
# (docs/numerics.md §4.4); 1-d layers are their 2-d forms with a unit height (the same order).


_KINDS_3D = ("Conv3d", "ConvTranspose3d")


def _fbgemm_explanation(params: Any, taps: list, plan: Any, w: np.ndarray, o: int, g: int, idx: tuple,
                        a_scale: float, a_zp: int, layer: str, torch_value: Optional[int], kind: str = "Conv2d",
                        direct: bool = False, relu: Optional[bool] = None) -> Explanation:
    """Steps 2-7 of an fbgemm derivation from the receptive field ``taps`` (fbgemm's K order) of output
    channel ``o``: products and int16 pairs (docs/numerics.md §4.6), the zero-point terms (§5.1), the
    float32 requantization with the core's per-channel constants (_core.requant_params), rounding
    and clamp. ``w``: the conv-form weight (O, Cg, *k); ``direct``: fbgemm's direct transposed path
    (column offsets over the taps given)."""
    relu = bool(params.relu) if relu is None else relu
    K = len(taps)
    acc = 0
    sat_pairs = []
    for k in range(0, K, 2):
        p1 = taps[k + 1].product if k + 1 < K else 0
        exact = taps[k].product + p1
        s = _sat16(exact) if plan.saturates else exact
        if s != exact:
            members = (taps[k],) + ((taps[k + 1],) if k + 1 < K else ())
            sat_pairs.append(SaturatedPair(k, k + 1 if k + 1 < K else None,
                                           tuple((t.kh, t.kw, t.c) if kind not in _KINDS_3D else (t.kd, t.kh, t.kw, t.c)
                                                 for t in members), exact, s))
        acc += s
    acc32 = _wrap32(acc)
    rowsum = sum(t.a for t in taps)
    O, Cg = w.shape[:2]
    T = int(np.prod(w.shape[2:]))
    w_rq = np.ascontiguousarray(np.moveaxis(w, 1, -1).reshape(O, T, 1, Cg))
    rq = _core.requant_params(w_rq, a_scale, a_zp, np.ascontiguousarray(params.weight_scale, np.float64),
                              np.ascontiguousarray(params.weight_zero_point, np.int32), bool(params.per_channel),
                              float(params.output_scale), params.bias, int(params.groups))
    i = o if params.per_channel else 0
    w_zp = int(params.weight_zero_point[i])
    colsum = sum(t.w for t in taps) if direct else int(w[o].astype(np.int64).sum())
    col_offset = _wrap32(colsum - w_zp * K) if direct else int(rq["col_offset"][o])
    a_term = _wrap32(a_zp * col_offset)
    w_term = _wrap32(rowsum * w_zp)
    raw = _wrap32(_wrap32(acc32 - a_term) - w_term)
    with np.errstate(all="ignore"):
        a_f, w_f, o_f = np.float32(a_scale), np.float32(float(params.weight_scale[i])), np.float32(params.output_scale)
        S = np.float32(a_f * w_f)
        M = np.float32(rq["multiplier"][o])
        bias = None if params.bias is None else np.float32(params.bias[o])
        R = bterm = None
        if bias is None:
            yf = np.float32(raw)
        elif rq["bias_fma"]:
            R = np.float32(rq["bias_rcp"])
            bterm = np.float32(bias * R)
            yf = fma_f32(bias, R, np.float32(raw))
        else:
            bterm = np.float32(rq["bias_term"][o])
            yf = np.float32(np.float32(raw) + bterm)
        y = np.float32(yf * M)
    r = _cvtps2dq(y)
    out_zp = int(params.output_zero_point)
    low = out_zp if relu else 0
    unclamped = _sat16(_sat16(r) + out_zp)
    exp = dict(index=idx, layer=layer or params.module_type, path=plan.path, saturates=plan.saturates,
               isa=plan.isa.name, group=g, taps=tuple(taps), acc=acc32, acc_exact=sum(t.product for t in taps),
               saturated_pairs=tuple(sat_pairs), rowsum=rowsum, K=K, colsum=colsum,
               col_offset=col_offset, input_zero_point=a_zp, weight_zero_point=w_zp, a_zp_term=a_term,
               w_zp_term=w_term, raw=raw, input_scale=a_scale, weight_scale=float(params.weight_scale[i]),
               output_scale=float(params.output_scale), a_f=float(a_f), w_f=float(w_f), o_f=float(o_f), S=float(S),
               M=float(M), per_channel=bool(params.per_channel), bias=None if bias is None else float(bias),
               bias_term=None if bterm is None else float(bterm), reciprocal=None if R is None else float(R),
               yf=float(yf), y=float(y), tie=bool(np.isfinite(y) and float(y) - math.floor(float(y)) == 0.5),
               rounded=r, output_zero_point=out_zp, relu=relu, low=low, unclamped=unclamped,
               value=min(max(unclamped, low), 255), torch_value=torch_value, kind=kind)
    exp["hand"] = tuple(_hand_formulas(exp))
    return Explanation(**exp)


def _nd_src(transposed: bool, o: int, k: int, s: int, p: int, d: int, n_in: int) -> Optional[int]:
    """Input coordinate of output coordinate ``o`` and tap ``k`` along one dim; None: no input."""
    if not transposed:
        x = o * s - p + k * d
        return x if 0 <= x < n_in else None
    t = o + p - k * d
    if t < 0 or t % s:
        return None
    return t // s if t // s < n_in else None


def _nd_geometry(params: Any, x: np.ndarray) -> tuple:
    """(transposed, conv-form weight (O, Cg, *k), stride, padding, dilation, output spatial shape)."""
    fn = "explain"
    transposed = params.kind == "conv_transpose"
    nd = x.ndim - 2
    G = int(params.groups)
    if params.weight.ndim != x.ndim:
        raise ValueError(f"explain: qx has shape {tuple(x.shape)} but this {params.module_type} takes "
                         f"{params.weight.ndim - 2}-d spatial inputs ({params.weight.ndim} dimensions)")
    st, pd, dl = (tuple(int(v) for v in t) for t in (params.stride, params.padding, params.dilation))
    if transposed:
        w, _, _ = _transposed_weight(fn, np.asarray(params.weight), G, x.shape[1])
        op = tuple(int(v) for v in params.output_padding)
        out = tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1
                    for n, s, p, d, k, o in zip(x.shape[2:], st, pd, dl, w.shape[2:], op))
    else:
        w = np.asarray(params.weight)
        if w.shape[1] * G != x.shape[1]:
            raise ValueError(f"explain: the layer takes {w.shape[1] * G} input channels ({w.shape[1]} per group x "
                             f"groups={G}) but qx has {x.shape[1]} (input channels must equal groups * weight "
                             f"channels)")
        out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                    for n, s, p, d, k in zip(x.shape[2:], st, pd, dl, w.shape[2:]))
    if min(out) < 1:
        raise ValueError(f"explain: qx of shape {tuple(x.shape)} gives an empty output {out} for this layer")
    del nd
    return transposed, w, st, pd, dl, out


def _nd_taps(x: np.ndarray, w: np.ndarray, n: int, o: int, g: int, pos: tuple, transposed: bool, st: tuple,
             pd: tuple, dl: tuple, pad_value: Optional[int]) -> list:
    """The taps of output (n, o, *pos) of group g in (kd, kh, kw, c) order; a tap without input holds
    ``pad_value`` (None: it is left out, as oneDNN does)."""
    nd = len(pos)
    Cg = w.shape[1]
    ks = w.shape[2:]
    taps: list = []
    for kk in itertools.product(*(range(k) for k in ks)):
        src = [_nd_src(transposed, pos[i], kk[i], st[i], pd[i], dl[i], x.shape[2 + i]) for i in range(nd)]
        inside = all(v is not None for v in src)
        if not inside and pad_value is None:
            continue
        # Tap's fields name (kd,) kh, kw and the input's (d,) h, w; a 1-d layer has a unit height
        k3 = (0,) * (3 - nd) + tuple(kk)
        i3 = (0,) * (3 - nd) + tuple(-1 if v is None else v for v in src)
        for c in range(Cg):
            a = int(x[(n, g * Cg + c) + tuple(src)]) if inside else int(pad_value)
            wv = int(w[(o, c) + tuple(kk)])
            taps.append(Tap(len(taps), k3[1], k3[2], g * Cg + c, i3[1], i3[2], not inside, a, wv, a * wv,
                            kd=k3[0], id=i3[0]))
    return taps


def _nd_index_of(index: Any, shape: tuple) -> tuple:
    """(n, o, *spatial) of the output element ``index``: a tuple, "n,c,..." or a flat int."""
    idx = _index_entries(index, shape, f"a tuple of {len(shape)} ints")
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        return idx
    if len(idx) != len(shape):
        raise ValueError(f"explain: index={idx} has {len(idx)} entries (must be {len(shape)} for this layer's "
                         f"output of shape {shape})")
    for i, (v, d) in enumerate(zip(idx, shape)):
        if not 0 <= v < d:
            raise ValueError(f"explain: index={idx} is out of range for output shape {shape} (entry {i}={v} must "
                             f"be in [0, {d}))")
    return idx


def _explain_nd(params: Any, torch_out: Optional[np.ndarray], qx: Any, index: Any, isa: str, input_scale: Any,
                input_zero_point: Any, layer: str) -> Explanation:
    """explain() for a Conv3dParams / ConvTransposeParams (Conv3d, ConvReLU3d, ConvTranspose1d/2d/3d)."""
    if is_torch_tensor(qx):
        input_scale, input_zero_point = float(qx.q_scale()), int(qx.q_zero_point())
    if params.kind == "conv3d":
        qx, _, _, pad = params._pad_input(qx, input_scale, input_zero_point)  # reflect pads the input first
        if tuple(pad) != tuple(params.padding):
            params = replace(params, padding=tuple(pad), padding_mode="zeros")
    x = qx.int_repr().numpy() if is_torch_tensor(qx) else qx
    a_scale, a_zp = float(input_scale), int(input_zero_point)
    transposed, w, st, pd, dl, out_sp = _nd_geometry(params, x)
    O, Cg = w.shape[:2]
    G = int(params.groups)
    idx = _nd_index_of(index, (x.shape[0], O) + out_sp)
    n, o, pos = idx[0], idx[1], idx[2:]
    g = o // (O // G)
    nd = len(pos)
    # the 2-d form torch runs 1-d layers as: unit height
    st2, pd2, dl2 = ((1,) + st, (0,) + pd, (1,) + dl) if nd == 1 else (st, pd, dl)
    ks2 = ((1,) if nd == 1 else ()) + tuple(w.shape[2:])
    what = ("ConvTranspose" if transposed else "Conv") + f"{nd}d"
    torch_value = None if torch_out is None else int(torch_out[idx])
    if params.engine == "onednn":
        pl, chain = plan_nd(transposed, max(nd, 2), G, Cg, O // G, ks2, st2, dl2, isa,
                            getattr(params, "onednn_kernel", "") or None)
        taps = _nd_taps(x, w, n, o, g, pos, transposed, st, pd, dl, None)
        acc = sum(t.product for t in taps)
        colsum = sum(t.w for t in taps)
        acc32, col32 = _wrap32(acc), _wrap32(colsum)
        col_all = _wrap32(int(w[o].astype(np.int64).sum()))
        if chain == "ref_deconv":
            # ref_deconvolution (module doc of qref.engines.onednn.nd): A = f32(int32(trunc(f32(f32(acc) -
            # f32(zp*colsum_all)))) + zp*colsum_outside); the requantization then starts from that integer
            with np.errstate(all="ignore"):
                t = np.float32(np.float32(acc32) - np.float32(_wrap32(a_zp * col_all)))
            conv = _wrap32(math.trunc(float(t))) if np.isfinite(t) else INT32_MIN
            a_int = _wrap32(conv + _wrap32(a_zp * _wrap32(col_all - col32)))
            st_acc, st_col = a_int, 0
        else:
            st_acc, st_col = acc32, col32
        i = o if params.per_channel else 0
        r = _core.onednn_requant_steps(st_acc, st_col, a_zp, chain == "float", float(params.weight_scale[i]),
                                       None if params.bias is None else float(params.bias[o]), a_scale,
                                       float(params.output_scale), int(params.output_zero_point),
                                       bool(params.relu), bool(pl.combined_scale), bool(pl.divide_dst))
        f = np.float32
        y = f(r["y"])
        steps = dict(kernel=pl.kernel, plan=str(pl), isa_class=pl.isa, combined_scale=pl.combined_scale,
                     compensation={"int": "int32", "float": "float", "ref_deconv": "ref_deconv"}[chain],
                     ss=float(f(r["ss"])), inv=float(f(r["inv"])), ws=float(f(r["ws"])), comb=float(f(r["comb"])),
                     A=float(f(r["A"])), scaled=float(f(r["scaled"])), with_bias=float(f(r["with_bias"])),
                     after_relu=float(f(r["after_relu"])), times_inv=float(f(r["dst_scaled"])),
                     with_zero_point=float(y), clamped=float(r["clamped"]), colsum_all=col_all,
                     divide_dst=bool(pl.divide_dst))
        value = int(r["value"])
        exp = dict(
            index=idx, layer=layer or params.module_type, path=pl.kernel, saturates=False,
            isa=f"auto({pl.isa})" if isa == "auto" else pl.isa, group=g, taps=tuple(taps), acc=acc32,
            acc_exact=acc, saturated_pairs=(), rowsum=sum(t.a for t in taps), K=len(taps), colsum=col32,
            col_offset=col32, input_zero_point=a_zp, weight_zero_point=0, a_zp_term=_wrap32(a_zp * col32),
            w_zp_term=0, raw=_wrap32(acc32 - _wrap32(a_zp * col32)), input_scale=a_scale,
            weight_scale=float(params.weight_scale[i]), output_scale=float(params.output_scale),
            a_f=steps["ss"], w_f=steps["ws"], o_f=float(f(params.output_scale)), S=steps["comb"], M=steps["inv"],
            per_channel=params.per_channel, bias=None if params.bias is None else float(f(r["bias"])),
            bias_term=None if params.bias is None else float(f(r["bias"])), reciprocal=None, yf=steps["A"],
            y=float(y), tie=bool(np.isfinite(y) and float(y) - math.floor(float(y)) == 0.5), rounded=value,
            output_zero_point=int(params.output_zero_point), relu=bool(params.relu), low=0,
            unclamped=int(np.rint(float(y))) if np.isfinite(y) and abs(float(y)) < 2**31 else INT32_MIN,
            value=value, torch_value=torch_value, engine="onednn", onednn=steps, kind=what)
        exp["hand"] = tuple(_hand_formulas_onednn(exp, params, x, pd))
        return Explanation(**exp)
    plan = params.plan(x.shape, isa=isa)
    # fbgemm's direct transposed path (docs/numerics.md §4.5; conv_transpose_direct_scalar): a scatter
    # without a_zp taps: only the taps that reach this position (no padding, no dilation there), pairs
    # of consecutive input channels of one tap (IC % 8 == 0: the same pairs as (2i, 2i+1) of that
    # list), and column offsets / row sum over exactly those taps
    direct = plan.path == "direct"
    taps = _nd_taps(x, w, n, o, g, pos, transposed, st, pd, dl, None if direct else a_zp)
    return _fbgemm_explanation(params, taps, plan, w, o, g, idx, a_scale, a_zp, layer, torch_value, what, direct,
                               bool(params.relu) and not transposed)


# ---------------------------------------------------------------------------- ATen's elementwise ops
#
# explain_op: the derivation of one output element of an ATen quantized elementwise op (add,
# mul, hardswish, sigmoid, tanh, elu, gelu) or of a dynamic Linear (float output), recomputed
# here with numpy float32 scalars in the kernel's order: whether the element falls in the SIMD
# body or the scalar tail of ATen's loop (docs/ops.md), the dequantize, the float function, the
# quantize. Its value is asserted equal to qref's op and torch's in tests/test_explain.py.

_EW_OPS = ("add", "add_relu", "mul", "mul_relu", "hardswish", "sigmoid", "tanh", "elu", "gelu")


@dataclass
class OpExplanation:
    """One output element of an ATen op, step by step: ``steps`` are (what, value) pairs."""

    op: str
    index: tuple
    capability: str
    part: str  # "SIMD body" / "scalar tail" / "" (not an elementwise loop)
    steps: list = field(default_factory=list)
    value: Any = None  # the output element: an int (quantized ops) or a float32 (dynamic linear)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = [(k, float(v) if isinstance(v, np.floating) else v) for k, v in self.steps]
        d["value"] = float(self.value) if isinstance(self.value, np.floating) else self.value
        return d

    def __str__(self) -> str:
        head = f"{self.op} at {self.index}"
        if self.part:
            head += f" ({self.part} of ATen's {self.capability} loop)"
        lines = [head + ":"]
        for k, v in self.steps:
            lines.append(f"  {k:<34} = {_f32(v) if isinstance(v, np.floating) else v}")
        lines.append(f"  => {self.value if not isinstance(self.value, np.floating) else _f32(self.value)}")
        return "\n".join(lines)


def _ew_part(pos: int, n: int, threads: int) -> bool:
    """True where ATen's cpu_kernel_vec runs element ``pos`` (memory order) in the SIMD body."""
    grain = 32768
    if n < grain or threads <= 1:
        b, e = 0, n
    else:
        nt = min(threads, -(-n // grain))
        chunk = -(-n // nt)
        b = pos // chunk * chunk
        e = min(n, b + chunk)
    return pos < b + (e - b) // 64 * 64


def _q_lane(inv: np.float32, zp: int, x: np.float32, lo: int, hi: int) -> tuple:
    t = np.float32(x * inv)
    r = int(np.rint(min(t, np.float32(2147483520.0))))
    return t, min(max(r + zp, lo), hi)


def _q_val(scale: np.float32, zp: int, x: np.float32, lo: int, hi: int) -> tuple:
    inv = np.float32(np.float32(1.0) / scale)
    t = np.float32(np.float32(zp) + np.float32(x * inv))
    return t, int(min(max(float(np.rint(t)), lo), hi))


def _q_legacy(inv: np.float32, zp: int, x: np.float32, lo: int, hi: int) -> tuple:
    t = np.float32(fma_f32(x, inv, np.float32(zp)))
    return t, int(min(max(float(np.rint(min(t, np.float32(2147483520.0)))), lo), hi))


def _nd_index(fn: str, index: Any, shape: tuple) -> tuple:
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        index = (int(index),)
    try:
        idx = tuple(int(v) for v in index)
    except TypeError:
        raise TypeError(f"{fn}: index must be a tuple of ints, got {type(index).__name__}") from None
    if len(idx) != len(shape) or not all(0 <= v < d for v, d in zip(idx, shape)):
        raise ValueError(f"{fn}: index={idx} is not an element of the output of shape {shape}")
    return idx


def explain_op(op: str, *inputs: Any, index: Any, capability: Any = None, num_threads: Any = None,
               **params: Any) -> OpExplanation:
    """The worked derivation of one output element of an ATen quantized op or a dynamic Linear.

    ``op``: one of "add", "add_relu", "mul", "mul_relu", "hardswish", "sigmoid", "tanh", "elu",
    "gelu" (torch quantized tensors in; output qparams as keywords ``scale``/``zero_point``
    where the op takes them, ``alpha`` for elu, ``approximate`` for gelu) or "linear_dynamic"
    (a float tensor and a qint8 weight, ``bias``, ``reduce_range``) or "cat" (the tensors;
    ``dim``, ``scale``, ``zero_point``, ``relu``). ``index``: the output element (a tuple of ints)."""
    fn = "explain_op"
    check_choice(fn, "op", op, _EW_OPS + ("linear_dynamic", "cat"))
    if op == "cat":
        return _explain_cat(*inputs, index=index, capability=capability, **params)
    if op == "linear_dynamic":
        return _explain_linear_dynamic(*inputs, index=index, **params)
    caps = ("default", "avx2", "avx512")
    cap = check_capability(fn, capability)
    nt = check_threads(fn, num_threads)
    nin = 2 if op in ("add", "add_relu", "mul", "mul_relu") else 1
    if len(inputs) != nin:
        raise ValueError(f"{fn}: op={op!r} takes {nin} input tensor(s), got {len(inputs)}")
    for t in inputs:
        if not is_torch_tensor(t) or not t.is_quantized:
            raise TypeError(f"{fn}: inputs must be torch quantized tensors, got {type(t).__name__}")
    x = inputs[0]
    idx = _nd_index(fn, index, tuple(x.shape))
    s8 = str(x.dtype) == "torch.qint8"
    lo, hi = (-128, 127) if s8 else (0, 255)
    n = x.numel()
    pos = int(sum(i * st for i, st in zip(idx, x.stride())))
    body = _ew_part(pos, n, nt)
    steps: list = []
    qs = [int(t.int_repr()[idx]) for t in inputs]
    ss = [np.float32(t.q_scale()) for t in inputs]
    zs = [int(t.q_zero_point()) for t in inputs]
    fma_body = body and cap != 0

    def deq(j: int) -> np.float32:
        steps.append((f"q{j} (input {j}'s byte)", qs[j]))
        if fma_body:
            pre = np.float32(ss[j] * -np.float32(zs[j]))
            v = fma_f32(ss[j], np.float32(qs[j]), pre)
            steps.append((f"x{j} = fma(s{j}, q{j}, s{j}*-z{j})", v))
        else:
            v = np.float32(ss[j] * np.float32(qs[j] - zs[j]))
            steps.append((f"x{j} = s{j} * (q{j} - z{j})", v))
        return np.float32(v)

    def quant(y: np.float32, so: np.float32, zo: int, inv: np.float32) -> int:
        if not body:
            t, r = _q_val(so, zo, y, lo, hi)
            steps.append(("zo + y * (1/so) (tail quantize_val)", t))
        elif cap == 0:
            t, r = _q_legacy(np.float32(np.float32(1.0) / so), zo, y, lo, hi)
            steps.append(("fma(y, 1/so, zo) (DEFAULT body)", t))
        else:
            t, r = _q_lane(inv, zo, y, lo, hi)
            steps.append(("y * inverse (SIMD quantize)", t))
        return r

    if op in ("mul", "mul_relu"):
        so, zo = np.float32(params["scale"]), int(params["zero_point"])
        prod = (qs[0] - zs[0]) * (qs[1] - zs[1])
        mult = np.float32(np.float32(ss[0] * ss[1]) * np.float32(np.float32(1.0) / so))
        steps += [("(qa - za) * (qb - zb)", prod), ("multiplier sa*sb*(1/so)", mult)]
        y = np.float32(np.float32(prod) * mult)
        steps.append(("product * multiplier", y))
        r = min(max(zo + int(np.rint(y)), lo), hi)
        if op == "mul_relu":
            r = max(r, zo)
        return OpExplanation(op, idx, caps[cap], "", steps, r)
    xs = [deq(j) for j in range(nin)]
    v = xs[0]
    if op in ("add", "add_relu"):
        so, zo = np.float32(params["scale"]), int(params["zero_point"])
        y = np.float32(xs[0] + xs[1])
        steps.append(("y = x0 + x1", y))
        if op == "add_relu":
            y = max(y, np.float32(0.0))
            steps.append(("relu", y))
        inv = np.float32(np.float32(1.0) / so)
    elif op == "hardswish":
        so, zo = np.float32(params["scale"]), int(params["zero_point"])
        y = np.float32(np.float32(v * min(max(np.float32(v + np.float32(3)), np.float32(0)), np.float32(6)))
                       / np.float32(6))
        steps.append(("y = x * min(max(x + 3, 0), 6) / 6", y))
        inv = np.float32(1.0 / float(params["scale"]))
    elif op == "sigmoid":
        so, zo = np.float32(1.0 / 256), (-128 if s8 else 0)
        if body:
            v = np.float32(ss[0] * np.float32(qs[0] - zs[0]))  # qsigmoid's body dequantizes (q - z) * s
            e = np.float32(np.exp(-v)) if cap == 0 else np.float32(_core.aten_sleef_expf(np.array([-v], np.float32))[0])
            steps.append(("exp(-x)" + (" (SLEEF expf_u10)" if cap else ""), e))
            y = np.float32(np.float32(1.0) / np.float32(np.float32(1.0) + e))
        else:
            e = np.float32(np.exp(np.float32(-v)))
            steps.append(("exp(-x)", e))
            y = np.float32(1.0 / (1.0 + float(e)))
        steps.append(("y = 1 / (1 + exp(-x))", y))
        inv = np.float32(1.0 / float(so))
    elif op == "tanh":
        so, zo = np.float32(0.0078125), (0 if s8 else 128)
        if body and cap:
            y = np.float32(_core.aten_vec_math(np.array([v], np.float32), "tanh")[0])
            steps.append(("y = tanh(x) (SLEEF tanhf_u10)", y))
        else:
            y = np.float32(np.tanh(v))
            steps.append(("y = tanh(x)", y))
        inv = np.float32(128.0)
    elif op == "elu":
        so, zo = np.float32(params["scale"]), int(params["zero_point"])
        alpha = np.float32(params.get("alpha", 1.0))
        if v > 0 or (not body and v >= 0):
            y = v
        else:
            e = (np.float32(_core.aten_sleef_expf(np.array([v], np.float32))[0]) if body and cap
                 else np.float32(np.exp(v)))
            steps.append(("exp(x)" + (" (SLEEF expf_u10)" if body and cap else ""), e))
            y = np.float32(np.float32(e - np.float32(1.0)) * alpha)
        steps.append(("y = x > 0 ? x : (exp(x) - 1) * alpha", y))
        inv = np.float32(1.0 / float(so))
    else:  # gelu
        approximate = params.get("approximate", "none")
        so, zo = ss[0], zs[0]
        if approximate != "none":
            raise ValueError(f"{fn}: gelu approximate={approximate!r} (explain_op covers 'none')")
        if body:
            a = np.float32(v * np.float32(math.sqrt(0.5)))
            er = np.float32(_core.aten_vec_math(np.array([a], np.float32), "erf")[0]) if cap else np.float32(math.erf(a))
            steps.append(("erf(x / sqrt(2))" + (" (ATen's vectorized erf)" if cap else ""), er))
            y = np.float32(np.float32(v * np.float32(0.5)) * np.float32(np.float32(1.0) + er))
        else:
            er = math.erf(float(v) * math.sqrt(0.5))
            steps.append(("erf(x / sqrt(2)) (double)", er))
            y = np.float32(float(v) * 0.5 * (1.0 + er))
        steps.append(("y = x * 0.5 * (1 + erf)", y))
        inv = np.float32(1.0 / float(so))
    r = quant(np.float32(y), np.float32(so), zo, inv)
    return OpExplanation(op, idx, caps[cap], "SIMD body" if body else "scalar tail", steps, r)


def _explain_cat(*xs: Any, index: Any, dim: Any, scale: Any, zero_point: Any, relu: bool = False,
                 capability: Any = None) -> OpExplanation:
    """quantized::cat(_relu) (qconcat.cpp quantized_cat_impl; docs/ops.md): channels_last 4-d inputs
    along dim 1 run qcat_nhwc_kernel (a copy where an input's qparams equal the output's and no
    relu; else SIMD blocks of Vectorized<q>::size() channels, then whole groups of 8, then scalar
    channels); every other case quantize_per_tensor(cat(dequantize(x)))."""
    fn = "explain_op"
    if not xs:
        raise ValueError(f"{fn}: op='cat' takes one or more input tensors, got none")
    for i, t in enumerate(xs):
        if not is_torch_tensor(t) or not t.is_quantized:
            raise TypeError(f"{fn}: inputs[{i}] must be a torch quantized tensor, got {type(t).__name__}")
    nd = xs[0].dim()
    d = check_int(fn, "dim", dim, -nd, nd - 1) % nd
    shape = list(xs[0].shape)
    shape[d] = sum(int(t.shape[d]) for t in xs)
    idx = _nd_index(fn, index, tuple(shape))
    cap = check_capability(fn, capability)
    so, zo = np.float32(scale), int(zero_point)
    lo, hi = (-128, 127) if str(xs[0].dtype) == "torch.qint8" else (0, 255)
    pos = idx[d]
    for t_i, t in enumerate(xs):  # the input this element comes from
        if pos < int(t.shape[d]):
            break
        pos -= int(t.shape[d])
    local = idx[:d] + (pos,) + idx[d + 1:]
    q = int(t.int_repr()[local])
    s, z = float(t.q_scale()), int(t.q_zero_point())
    sf = np.float32(s)
    steps: list = [(f"input {t_i} (its element {local})", q), ("its scale, zero point", f"{_f32(sf)}, {z}")]
    caps = ("default", "avx2", "avx512")
    if nd == 4 and d == 1 and all(_layout(x) == "nhwc" for x in xs):
        C = int(t.shape[1])
        if s == float(scale) and z == zo and not relu:
            steps.append(("same qparams as the output, no relu: the byte is copied", q))
            return OpExplanation("cat", idx, caps[cap], "copy (channels_last)", steps, q)
        vlen = 64 if cap == 2 else 32
        blocks = C // vlen * vlen
        body = pos < blocks + (C - blocks) // 8 * 8
        if body:
            if cap == 0:
                v = np.float32(sf * np.float32(q - z))
                steps.append(("x = s * (q - z)", v))
            else:
                v = fma_f32(sf, np.float32(q), np.float32(sf * -np.float32(z)))
                steps.append(("x = fma(s, q, s*-z)", v))
            if relu:
                v = max(v, np.float32(0.0))
                steps.append(("relu", v))
            if cap == 0:
                tq, r = _q_legacy(np.float32(np.float32(1.0) / so), zo, v, lo, hi)
                steps.append(("fma(x, 1/so, zo) (DEFAULT body)", tq))
            else:
                tq, r = _q_lane(np.float32(1.0 / float(scale)), zo, v, lo, hi)
                steps.append(("x * float(1.0/so) (SIMD quantize)", tq))
        else:
            v = np.float32(sf * np.float32(q - z))
            steps.append(("x = s * (q - z)", v))
            if relu:
                v = max(v, np.float32(0.0))
                steps.append(("relu", v))
            tq, r = _q_val(so, zo, v, lo, hi)
            steps.append(("zo + x * (1/so) (tail quantize_val)", tq))
        return OpExplanation("cat", idx, caps[cap], ("SIMD body" if body else "scalar tail") + " (channels_last)",
                             steps, r)
    v = np.float32(sf * np.float32(q - z))
    steps.append(("x = s * (q - z) (dequantize)", v))
    tq, r = _q_legacy(np.float32(np.float32(1.0) / so), zo, v, lo, hi)
    steps.append(("fma(x, 1/so, zo) (quantize_per_tensor)", tq))
    if relu:
        r = max(r, zo)
        steps.append(("relu: max(q, zo)", r))
    return OpExplanation("cat", idx, caps[cap], "", steps, r)


def _explain_linear_dynamic(x: Any, weight: Any, bias: Any = None, *, index: Any, reduce_range: bool = True,
                            relu: bool = False) -> OpExplanation:
    fn = "explain_op"
    xa = np.ascontiguousarray(x.detach().numpy() if is_torch_tensor(x) else np.asarray(x, np.float32))
    shape = tuple(xa.shape[:-1]) + (int(weight.shape[0]),)
    idx = _nd_index(fn, index, shape)
    if str(weight.qscheme()) in ("torch.per_tensor_affine", "torch.per_tensor_symmetric"):
        ws, wz = np.float32(weight.q_scale()), int(weight.q_zero_point())
    else:
        ws = np.float32(weight.q_per_channel_scales()[idx[-1]].item())
        wz = int(weight.q_per_channel_zero_points()[idx[-1]].item())
    mn, mx = np.float32(min(float(xa.min()), 0.0)), np.float32(max(float(xa.max()), 0.0))
    qmin, qmax = (0, 127) if reduce_range else (0, 255)
    scale = (float(mx) - float(mn)) / (qmax - qmin)
    if np.float32(scale) == 0 or np.isinf(np.float32(1.0) / np.float32(scale)):
        scale = 0.1
    if scale < float(np.float32(6.1e-5)):
        raise ValueError(f"{fn}: x's range gives a scale below the 6.1e-5 cutoff (explain_op does not cover it)")
    zmin, zmax = qmin - float(mn) / scale, qmax - float(mx) / scale
    init = zmin if abs(qmin) - abs(float(mn) / scale) < abs(qmax) - abs(float(mx) / scale) else zmax
    xz = qmin if init < qmin else qmax if init > qmax else int(np.rint(init))
    s = np.float32(scale)
    steps: list = [("min(x, 0), max(x, 0)", f"{_f32(mn)}, {_f32(mx)}"), ("x_scale (float)", s), ("x_zero_point", xz)]
    row = xa.reshape(-1, xa.shape[-1])[int(np.ravel_multi_index(idx[:-1], shape[:-1])) if len(shape) > 1 else 0]
    inv = np.float32(np.float32(1.0) / s)
    qa = np.array([_q_legacy(inv, xz, np.float32(v), 0, 255)[1] for v in row], np.int64)
    w = weight.int_repr().numpy()[idx[-1]].astype(np.int64)
    acc = int(((qa - xz) * (w - wz)).sum())
    steps += [("quantized row: rint(fma(x, 1/x_scale, zp))", f"{qa[:8].tolist()}{'...' if len(qa) > 8 else ''}"),
              ("acc = sum (qx - zx) * (w - zw)", acc)]
    mult = np.float32(s * ws)
    steps.append(("x_scale * w_scale", mult))
    if bias is not None:
        b = np.float32(float(bias[idx[-1]]))
        y = fma_f32(np.float32(acc), mult, b)
        steps.append(("fma(float(acc), x_scale*w_scale, bias)", y))
    else:
        y = np.float32(np.float32(acc) * mult)
        steps.append(("float(acc) * x_scale*w_scale", y))
    if relu:
        y = max(np.float32(y), np.float32(0.0))
    return OpExplanation("linear_dynamic", idx, "", "", steps, np.float32(y))


def explain_reduction(op: str, x: Any, *, index: Any, **params: Any) -> OpExplanation:
    """The worked derivation of one output element of a quantized pooling, mean or softmax.

    ``op``: "max_pool2d" (``kernel_size``, ``stride``, ``padding``: 2-tuples), "avg_pool2d" (the
    same, contiguous NCHW x, no ceil_mode/divisor), "mean" (over the last ``dims`` dims of a
    contiguous x; output keeps x's qparams), "softmax" (the last dim; ``scale``,
    ``zero_point``, ``capability``), "batch_norm" (``weight``, ``bias``, ``mean``, ``var``,
    ``eps``, ``relu``), "layer_norm" (``normalized_shape``, ``weight``, ``bias``, ``eps``),
    "group_norm" (``num_groups``, ``weight``, ``bias``, ``eps``), "instance_norm" (``weight``,
    ``bias``, ``eps``): the norms take the output's ``scale``/``zero_point`` and ``capability``.
    ``index``: the output element."""
    fn = "explain_reduction"
    check_choice(fn, "op", op, ("max_pool2d", "avg_pool2d", "mean", "softmax") + _NORMS)
    if not is_torch_tensor(x) or not x.is_quantized:
        raise TypeError(f"{fn}: x must be a torch quantized tensor, got {type(x).__name__}")
    if op in _NORMS:
        return _explain_norm(op, x, index=index, **params)
    q = x.int_repr().contiguous().numpy().astype(np.int64)
    s, z = np.float32(x.q_scale()), int(x.q_zero_point())
    s8 = str(x.dtype) == "torch.qint8"
    lo, hi = (-128, 127) if s8 else (0, 255)
    steps: list = []
    if op in ("max_pool2d", "avg_pool2d"):
        if x.dim() != 4:
            raise ValueError(f"{fn}: x has shape {tuple(x.shape)} (must be 4-d NCHW for {op})")
        k = tuple(params["kernel_size"])
        st = tuple(params.get("stride") or k)
        pd = tuple(params.get("padding", (0, 0)))
        H, W = q.shape[-2:]
        oh, ow = (H + 2 * pd[0] - k[0]) // st[0] + 1, (W + 2 * pd[1] - k[1]) // st[1] + 1
        idx = _nd_index(fn, index, tuple(q.shape[:-2]) + (oh, ow))
        plane = q[idx[:-2]]
        h0, w0 = idx[-2] * st[0] - pd[0], idx[-1] * st[1] - pd[1]
        h1, w1 = min(h0 + k[0], H + pd[0]), min(w0 + k[1], W + pd[1])
        pool_size = (h1 - h0) * (w1 - w0)
        win = plane[max(h0, 0):min(h1, H), max(w0, 0):min(w1, W)]
        steps.append(("window (rows, cols in bounds)", f"[{max(h0, 0)}:{min(h1, H)}, {max(w0, 0)}:{min(w1, W)}]"))
        if op == "max_pool2d":
            steps.append(("taps", win.ravel().tolist()))
            return OpExplanation(op, idx, "", "", steps, int(win.max()))
        cip = bool(params.get("count_include_pad", True))
        divide = pool_size if cip else win.size
        acc = int(win.sum()) - win.size * z
        mult = np.float32(float(s) / float(s) / divide)  # avg_pool keeps x's qparams
        steps += [("sum(q) - taps * z", acc), ("divisor", divide), ("multiplier float(si/so/divisor)", mult)]
        y = np.float32(np.float32(np.float32(acc) * mult) + np.float32(z))
        steps.append(("sum * multiplier + z", y))
        return OpExplanation(op, idx, "", "", steps, int(min(max(float(np.rint(y)), lo), hi)))
    if op == "mean":
        dims = int(params.get("dims", 1))
        lead = q.shape[:-dims] if dims < q.ndim else ()
        idx = _nd_index(fn, index, tuple(lead)) if lead else ()
        row = q[idx].ravel() if lead else q.ravel()
        y = np.float32(np.float32(int(row.sum())) / np.float32(row.size))
        steps += [("integer sum of the bytes", int(row.sum())), ("elements", row.size), ("float(sum) / float(n)", y)]
        return OpExplanation(op, idx, "", "", steps, int(np.rint(y)))
    # softmax over the last dim (docs/ops.md): float softmax of the dequantized row, then quantize
    idx = _nd_index(fn, index, tuple(q.shape))
    cap = check_capability(fn, params.get("capability"))
    so, zo = float(params["scale"]), int(params["zero_point"])
    row = q[idx[:-1]]
    xs = (s * (row - z).astype(np.float32)).astype(np.float32)
    m = xs.max()
    d = np.float32(xs[idx[-1]] - m)
    ex = (np.exp(d) if cap == 0 else _core.aten_sleef_expf(np.array([d], np.float32))[0])
    steps += [("x = s * (q - z)", np.float32(xs[idx[-1]])), ("row max", np.float32(m)),
              ("exp(x - max)" + ("" if cap == 0 else " (SLEEF expf_u10)"), np.float32(ex))]
    if cap == 0:  # the std::exp of the DEFAULT capability is glibc's expf: read it from qref's op
        one = aten_ops.softmax(x[idx[:-1]].unsqueeze(0), dim=-1, scale=so, zero_point=zo, capability="default")
        steps.append(("(DEFAULT: sum and quantize as qref's softmax)", "see docs/ops.md"))
        return OpExplanation(op, idx, "default", "", steps, int(one.int_repr()[(0, idx[-1])]))
    V = 16 if cap == 2 else 8
    e = _core.aten_sleef_expf((xs - m).astype(np.float32))
    n = e.size
    if n < V:
        tot = np.float32(e[0])
        for v in e[1:]:
            tot = np.float32(tot + v)
    else:
        acc = e[:V].copy()
        dd = V
        while dd < n - n % V:
            acc = (acc + e[dd:dd + V]).astype(np.float32)
            dd += V
        acc[:n - dd] = (acc[:n - dd] + e[dd:]).astype(np.float32)
        w = V // 2
        while w >= 1:
            acc[:w] = (acc[:w] + acc[w:2 * w]).astype(np.float32)
            w //= 2
        tot = np.float32(acc[0])
    inv = np.float32(np.float32(1.0) / tot)
    y = np.float32(np.float32(ex) * inv)
    steps += [("sum of exp (reduce_all order)", tot), ("1 / sum", inv), ("y = exp * (1/sum)", y)]
    t, r = _q_legacy(np.float32(np.float32(1.0) / np.float32(so)), zo, y, lo, hi)
    steps.append(("fma(y, 1/so, zo) (quantize_per_tensor)", t))
    return OpExplanation(op, idx, ("default", "avx2", "avx512")[cap], "", steps, r)


# ---------------------------------------------------------------------------- the norms
#
# batch_norm: Normalization.cpp compute_fused_params, then q_batch_norm_kernel on channels_last data;
# layer_norm / group_norm / instance_norm: quantized_normalize_kernel on contiguous data (docs/ops.md;
# qref's kernels in csrc/qref/aten/aten_ops.cc batch_norm_t, normalize_t).

_NORMS = ("batch_norm", "layer_norm", "group_norm", "instance_norm")


def _f32_at(v: Any, i: int, default: float) -> np.float32:
    if v is None:
        return np.float32(default)
    a = v.detach().numpy() if is_torch_tensor(v) else np.asarray(v)
    return np.float32(a.reshape(-1)[i])


def _explain_norm(op: str, x: Any, *, index: Any, scale: Any = None, zero_point: Any = None, weight: Any = None, bias: Any = None,
                  eps: Any = 1e-5, mean: Any = None, var: Any = None, relu: bool = False, normalized_shape: Any = None,
                  num_groups: Any = None, capability: Any = None) -> OpExplanation:
    fn = "explain_reduction"
    if scale is None or zero_point is None:
        raise ValueError(f"{fn}: op={op!r} needs the output's scale= and zero_point= (got scale={scale!r}, "
                         f"zero_point={zero_point!r})")
    scale = check_scale(fn, "scale", scale)
    cap = check_capability(fn, capability)
    caps = ("default", "avx2", "avx512")
    idx = _nd_index(fn, index, tuple(x.shape))
    s8 = str(x.dtype) == "torch.qint8"
    lo, hi = (-128, 127) if s8 else (0, 255)
    q = int(x.int_repr()[idx])
    xs_d, xz = float(x.q_scale()), int(x.q_zero_point())
    so_d, zo = float(scale), int(zero_point)
    f = np.float32
    steps: list = [("q (the input's byte)", q)]
    if op == "batch_norm":
        if mean is None or var is None:
            raise ValueError(f"{fn}: op='batch_norm' needs mean= and var= (the running statistics)")
        C, c = int(x.shape[1]), idx[1]
        w, b = _f32_at(weight, c, 1.0), _f32_at(bias, c, 0.0)
        m, v = _f32_at(mean, c, 0.0), _f32_at(var, c, 0.0)
        with np.errstate(all="ignore"):
            inv_sigma = f(1.0 / float(np.sqrt(f(v + f(eps)))))
            alpha = f(float(f(inv_sigma * w)) * (xs_d / so_d))
            beta = f(float(f(b - f(f(m * inv_sigma) * w))) / so_d)
        steps += [("inv_sigma = float(1 / sqrtf(var + eps))", inv_sigma), ("alpha = inv_sigma*w * (si/so)", alpha),
                  ("beta = (b - mean*inv_sigma*w) / so", beta)]
        lanes = 64 if cap == 2 else 32
        body_full = C // lanes * lanes
        c_body = body_full + (C - body_full) // 8 * 8 if lanes == 32 and C - body_full >= 8 else body_full
        dq = f(q - xz)
        with np.errstate(all="ignore"):
            y = f(f(alpha * dq) + beta) if cap == 0 else fma_f32(alpha, dq, beta)
        steps.append(("y = alpha * (q - z) + beta" + ("" if cap == 0 else " (fma)"), y))
        if c < c_body:
            t, r = (_q_legacy(f(1.0), zo, y, lo, hi) if cap == 0 else _q_lane(f(1.0), zo, y, lo, hi))
            steps.append(("rint(y) + zo (SIMD body)", t))
        else:
            r = min(max(zo + int(np.rint(y)), lo), hi) if np.isfinite(y) else lo
            steps.append(("zo + lrintf(y) (scalar channel)", r))
        if relu:
            r = max(r, zo)
            steps.append(("relu: max(q, zo)", r))
        return OpExplanation(op, idx, caps[cap], "SIMD body" if c < c_body else "scalar channel", steps, r)
    if not x.is_contiguous():
        raise ValueError(f"{fn}: x is not contiguous (op={op!r} is derived for contiguous x; the channels_last "
                         f"kernel is not reproduced)")
    flat = int(np.ravel_multi_index(idx, tuple(x.shape)))
    if op == "layer_norm":
        ns = tuple(normalized_shape) if isinstance(normalized_shape, (list, tuple)) else (normalized_shape,)
        if normalized_shape is None or tuple(x.shape[x.dim() - len(ns):]) != tuple(int(d) for d in ns):
            raise ValueError(f"{fn}: normalized_shape={normalized_shape!r} (must be the trailing dims of x's shape "
                             f"{tuple(x.shape)})")
        N = int(np.prod(ns))
        per_channel = False
    else:
        C = int(x.shape[1])
        G = C if op == "instance_norm" else int(num_groups)
        if G < 1 or C % G:
            raise ValueError(f"{fn}: num_groups={num_groups!r} (must divide the {C} channels)")
        N = x.numel() // (int(x.shape[0]) * G)
        per_channel = True
    i, j = divmod(flat, N)
    row = x.int_repr().contiguous().numpy().reshape(-1)[i * N:(i + 1) * N].astype(np.int64)
    ssum, ssq = int(row.sum()), int((row * row).sum())
    fma_on = cap != 0
    xs = f(xs_d)
    with np.errstate(all="ignore"):
        ms = f(f(ssum) / f(N))
        mean_ = f(ms - f(xz))
        ex2 = f(f(ssq) / f(N))
        var0 = fma_f32(-ms, ms, ex2) if fma_on else f(ex2 - f(ms * ms))
        var_ = max(var0, f(0.0))
        inv_std = f(float(xs) / math.sqrt(float(f(f(var_ * xs) * xs)) + float(eps)))
    steps += [("row: integer sum, sum of squares", f"{ssum}, {ssq} over {N} elements"),
              ("mean = sum/N - z", mean_), ("var = max(sumsq/N - (sum/N)^2, 0)" + (" (fma)" if fma_on else ""), var_),
              ("k = s / sqrt(var*s*s + eps)", inv_std)]
    dq = f(q - xz)
    ys = f(so_d)
    with np.errstate(all="ignore"):
        if per_channel:
            cpg = C // G
            ch = j // (N // cpg)
            si = (i * cpg + ch) % C
            g, b = _f32_at(weight, si, 1.0), _f32_at(bias, si, 0.0)
            gp = f(inv_std * g)
            u = f(dq - mean_)
            y = fma_f32(u, gp, b) if fma_on else f(f(u * gp) + b)
            steps += [(f"channel {si}: k * gamma, beta", f"{_f32(gp)}, {_f32(b)}"),
                      ("y = (q - z - mean) * (k*gamma) + beta" + (" (fma)" if fma_on else ""), y)]
            body = True
        else:
            g, b = _f32_at(weight, j, 1.0), _f32_at(bias, j, 0.0)
            t = f(f(dq - mean_) * inv_std)
            y = fma_f32(t, g, b) if fma_on else f(f(t * g) + b)
            steps += [("t = (q - z - mean) * k", t), ("y = t * gamma + beta" + (" (fma)" if fma_on else ""), y)]
            kint = 64 if cap == 2 else 32
            body = j < N // kint * kint
    if body:
        if cap == 0:
            tq, r = _q_legacy(f(f(1.0) / ys), zo, y, lo, hi)
            steps.append(("fma(y, 1/so, zo) (DEFAULT body)", tq))
        else:
            tq, r = _q_lane(f(f(1.0) / ys), zo, y, lo, hi)
            steps.append(("y * (1/so) (SIMD quantize)", tq))
    else:
        tq, r = _q_val(ys, zo, y, lo, hi)
        steps.append(("zo + y * (1/so) (tail quantize_val)", tq))
    return OpExplanation(op, idx, caps[cap], "SIMD body" if body else "scalar tail", steps, r)
