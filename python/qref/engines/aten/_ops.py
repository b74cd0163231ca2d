"""ATen's quantized (non-conv) CPU ops, bit for bit.

Every function takes torch quantized tensors (per-tensor affine quint8/qint8) or
:class:`QTensor` values (numpy data + qparams) and returns the same kind. The
arithmetic is qref's own C++ (``csrc/qref/aten``); docs/ops.md gives each op's
formula and the ATen source it reproduces.

``capability`` ('default', 'avx2', 'avx512'; None: the one torch picked) and
``num_threads`` (None: torch.get_num_threads()) matter where ATen's SIMD body and
scalar tail round differently; see docs/ops.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import _core
from ._args import (
    MAX_ELEMENTS,
    QTensor,
    check_bool,
    check_capability,
    check_dtype,
    check_float,
    check_int,
    check_scale,
    check_size_list,
    check_threads,
    check_zero_point,
    is_torch,
)

# ---------------------------------------------------------------------------
# torch <-> numpy in memory order


def _layout(t: Any) -> str:
    import torch

    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return "nhwc"
    if t.dim() == 5 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last_3d):
        return "ndhwc"
    return "contiguous"


def _mem(t: Any) -> np.ndarray:
    """int_repr bytes in memory order (NHWC for channels_last)."""
    r = t.int_repr()
    lay = _layout(t)
    if lay == "nhwc":
        r = r.permute(0, 2, 3, 1)
    elif lay == "ndhwc":
        r = r.permute(0, 2, 3, 4, 1)
    return np.ascontiguousarray(r.contiguous().numpy())


def _to_torch(data: np.ndarray, layout: str, scale: float, zero_point: int) -> Any:
    import torch

    r = torch.from_numpy(np.ascontiguousarray(data))
    if layout == "nhwc":
        r = r.permute(0, 3, 1, 2)
    elif layout == "ndhwc":
        r = r.permute(0, 4, 1, 2, 3)
    return torch._make_per_tensor_quantized_tensor(r, scale, zero_point)


class _Q:
    """One quantized operand: bytes in memory order, logical shape, qparams, origin."""

    def __init__(self, fn: str, name: str, x: Any) -> None:
        if is_torch(x):
            import torch

            if not x.is_quantized:
                raise TypeError(f"{fn}: {name} is a float torch tensor (must be a quantized tensor, or a QTensor)")
            if x.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                raise ValueError(f"{fn}: {name} has qscheme {x.qscheme()} (must be per-tensor affine)")
            if x.dtype not in (torch.quint8, torch.qint8):
                raise TypeError(f"{fn}: {name} has dtype {x.dtype} (must be torch.quint8 or torch.qint8)")
            if x.device.type != "cpu":
                raise ValueError(f"{fn}: {name} is on device {x.device} (must be on the CPU)")
            self.torch = True
            self.layout = _layout(x)
            self.data = _mem(x)
            self.shape = tuple(x.shape)
            self.scale = float(x.q_scale())
            self.zero_point = int(x.q_zero_point())
            self.dtype = "qint8" if x.dtype == torch.qint8 else "quint8"
        elif isinstance(x, QTensor):
            self.torch = False
            self.layout = "contiguous"
            self.data = np.ascontiguousarray(x.data)
            self.shape = tuple(x.data.shape)
            self.scale = x.scale
            self.zero_point = x.zero_point
            self.dtype = x.dtype
        else:
            raise TypeError(f"{fn}: {name} has type {type(x).__name__} (must be a torch quantized tensor or a QTensor)")
        if self.data.size > MAX_ELEMENTS:
            raise ValueError(f"{fn}: {name} has {self.data.size} elements (must be at most 2^40)")

    def nchw(self) -> np.ndarray:
        """The bytes in logical (contiguous) order."""
        if self.layout == "nhwc":
            return np.ascontiguousarray(self.data.transpose(0, 3, 1, 2))
        if self.layout == "ndhwc":
            return np.ascontiguousarray(self.data.transpose(0, 4, 1, 2, 3))
        return self.data

    def make(self, data: np.ndarray, scale: float, zero_point: int, layout: str | None = None) -> Any:
        lay = self.layout if layout is None else layout
        if self.torch:
            return _to_torch(data, lay, scale, zero_point)
        return QTensor(data=np.ascontiguousarray(data), scale=scale, zero_point=zero_point)


def _out_qparams(fn: str, q: _Q, scale: Any, zero_point: Any) -> tuple[float, int]:
    s = check_scale(fn, "scale", scale)
    z = check_zero_point(fn, "zero_point", zero_point, q.dtype)
    return s, z


# ---------------------------------------------------------------------------
# quantize / dequantize


def quantize_per_tensor(x: Any, *, scale: Any, zero_point: Any, dtype: Any, num_threads: Any = None) -> Any:
    """torch.quantize_per_tensor: fbgemm::Quantize<T> with its default LEGACY rounding,
    sat(rne(fma(x, 1 / scale, zero_point))) for every element (so num_threads, accepted for symmetry,
    does not change the bytes). x: a float32 torch tensor or numpy array; NaN is refused."""
    fn = "quantize_per_tensor"
    dt = check_dtype(fn, "dtype", dtype)
    s = check_scale(fn, "scale", scale)
    z = check_zero_point(fn, "zero_point", zero_point, dt)
    nt = check_threads(fn, num_threads)
    torch_in = is_torch(x)
    if torch_in:
        import torch

        if x.is_quantized or x.dtype != torch.float32:
            raise TypeError(f"{fn}: x has dtype {x.dtype} (must be torch.float32)")
        layout = _layout(x)
        arr = x.detach()
        if layout == "nhwc":
            arr = arr.permute(0, 2, 3, 1)
        elif layout == "ndhwc":
            arr = arr.permute(0, 2, 3, 4, 1)
        a = np.ascontiguousarray(arr.contiguous().numpy())
    elif isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            raise TypeError(f"{fn}: x has dtype {x.dtype} (must be float32)")
        layout = "contiguous"
        a = np.ascontiguousarray(x)
    else:
        raise TypeError(f"{fn}: x has type {type(x).__name__} (must be a float32 torch tensor or numpy array)")
    if np.isnan(a).any():
        raise ValueError(f"{fn}: x contains NaN (must be free of NaN: fbgemm's result for NaN is undefined behaviour)")
    out = _core.aten_quantize_per_tensor(a, s, z, dt == "qint8", nt)
    if torch_in:
        return _to_torch(out, layout, s, z)
    return QTensor(data=out, scale=s, zero_point=z)


def quantize_per_channel(x: Any, *, scales: Any, zero_points: Any, axis: Any, dtype: Any) -> Any:
    """torch.quantize_per_channel: quantize_val with each channel's float32 scale and zero point.
    Returns a torch per-channel tensor for torch input, else (data, scales, zero_points)."""
    fn = "quantize_per_channel"
    dt = check_dtype(fn, "dtype", dtype)
    torch_in = is_torch(x)
    if torch_in:
        import torch

        if x.is_quantized or x.dtype != torch.float32:
            raise TypeError(f"{fn}: x has dtype {x.dtype} (must be torch.float32)")
        a = np.ascontiguousarray(x.detach().contiguous().numpy())
    elif isinstance(x, np.ndarray) and x.dtype == np.float32:
        a = np.ascontiguousarray(x)
    else:
        raise TypeError(f"{fn}: x has type {type(x).__name__} (must be a float32 torch tensor or numpy array)")
    if a.ndim == 0:
        raise ValueError(f"{fn}: x is 0-d (must have the channel axis)")
    ax = check_int(fn, "axis", axis, -a.ndim, a.ndim - 1) % a.ndim
    C = a.shape[ax]
    sc = np.asarray(scales.detach().numpy() if is_torch(scales) else scales, dtype=np.float64).reshape(-1)
    zp = np.asarray(zero_points.detach().numpy() if is_torch(zero_points) else zero_points).reshape(-1)
    if sc.size != C or zp.size != C:
        raise ValueError(f"{fn}: scales/zero_points have {sc.size}/{zp.size} values (must be {C}, one per channel)")
    for i in range(C):
        check_scale(fn, f"scales[{i}]", float(sc[i]))
        check_zero_point(fn, f"zero_points[{i}]", int(zp[i]), dt)
    if np.isnan(a).any():
        raise ValueError(f"{fn}: x contains NaN (must be free of NaN)")
    outer = int(np.prod(a.shape[:ax], dtype=np.int64))
    inner = int(np.prod(a.shape[ax + 1:], dtype=np.int64))
    out = _core.aten_quantize_per_channel(a, outer, C, inner, sc, zp.astype(np.int64), dt == "qint8")
    if torch_in:
        import torch

        return torch._make_per_channel_quantized_tensor(
            torch.from_numpy(out), torch.from_numpy(sc.copy()), torch.from_numpy(zp.astype(np.int64)), ax)
    return out, sc, zp.astype(np.int64)


def dequantize(q: Any) -> Any:
    """Tensor.dequantize: per tensor fbgemm::Dequantize, scale * (q - zero_point) in float32;
    per channel (q - zero_point) * scale. Returns float32 torch tensor / numpy array."""
    fn = "dequantize"
    if is_torch(q):
        import torch

        if q.is_quantized and q.qscheme() in (torch.per_channel_affine,):
            a = np.ascontiguousarray(q.int_repr().contiguous().numpy())
            ax = int(q.q_per_channel_axis())
            C = a.shape[ax]
            outer = int(np.prod(a.shape[:ax], dtype=np.int64))
            inner = int(np.prod(a.shape[ax + 1:], dtype=np.int64))
            out = _core.aten_dequantize_per_channel(
                a, outer, C, inner, q.q_per_channel_scales().double().numpy(),
                q.q_per_channel_zero_points().long().numpy())
            return torch.from_numpy(out)
    qq = _Q(fn, "q", q)
    out = _core.aten_dequantize_per_tensor(qq.data, qq.scale, qq.zero_point)
    if qq.torch:
        import torch

        r = torch.from_numpy(out)
        if qq.layout == "nhwc":
            r = r.permute(0, 3, 1, 2)
        elif qq.layout == "ndhwc":
            r = r.permute(0, 4, 1, 2, 3)
        return r
    return out


# ---------------------------------------------------------------------------
# elementwise


def _binary(fn: str, op: int, a: Any, b: Any, scale: Any, zero_point: Any, capability: Any, num_threads: Any) -> Any:
    qa, qb = _Q(fn, "a", a), _Q(fn, "b", b)
    if qa.torch != qb.torch:
        raise TypeError(f"{fn}: a and b must both be torch tensors or both QTensors")
    if qa.dtype != qb.dtype:
        raise TypeError(f"{fn}: a has dtype {qa.dtype} and b {qb.dtype} (must be the same)")
    if qa.shape != qb.shape:
        raise ValueError(f"{fn}: a has shape {qa.shape} and b {qb.shape} (must be equal: broadcasting is not reproduced)")
    if qa.layout != qb.layout:
        raise ValueError(f"{fn}: a is {qa.layout} and b is {qb.layout} (must share one memory format)")
    s, z = _out_qparams(fn, qa, scale, zero_point)
    cap = check_capability(fn, capability)
    nt = check_threads(fn, num_threads)
    out = _core.aten_binary(op, qa.data, qb.data, qa.scale, qa.zero_point, qb.scale, qb.zero_point, s, z, cap, nt)
    return qa.make(out, s, z)


def add(a: Any, b: Any, *, scale: Any, zero_point: Any, capability: Any = None, num_threads: Any = None) -> Any:
    """quantized::add (QuantizedOpKernels.cpp qadd_kernel)."""
    return _binary("add", 0, a, b, scale, zero_point, capability, num_threads)


def add_relu(a: Any, b: Any, *, scale: Any, zero_point: Any, capability: Any = None, num_threads: Any = None) -> Any:
    """quantized::add_relu (qadd_kernel<ReLUFused=true>)."""
    return _binary("add_relu", 1, a, b, scale, zero_point, capability, num_threads)


def mul(a: Any, b: Any, *, scale: Any, zero_point: Any, capability: Any = None, num_threads: Any = None) -> Any:
    """quantized::mul (qmul_kernel): integer product, requantize_from_int."""
    return _binary("mul", 2, a, b, scale, zero_point, capability, num_threads)


def mul_relu(a: Any, b: Any, *, scale: Any, zero_point: Any, capability: Any = None, num_threads: Any = None) -> Any:
    """quantized::mul_relu (qmul_kernel<ReLUFused=true>)."""
    return _binary("mul_relu", 3, a, b, scale, zero_point, capability, num_threads)


def add_scalar(x: Any, other: Any, *, relu: Any = False, capability: Any = None, num_threads: Any = None) -> Any:
    """quantized::add_scalar / add_scalar_relu (BinaryOps.cpp _add_scalar_out): the output
    qparams are derived from x's and the scalar."""
    fn = "add_scalar"
    q = _Q(fn, "x", x)
    c = check_float(fn, "other", other)
    r = check_bool(fn, "relu", relu)
    if abs(c / q.scale) >= 1e15:
        raise ValueError(f"{fn}: other={c!r} is too large for x's scale (must satisfy |other / scale| < 1e15)")
    cap = check_capability(fn, capability)
    nt = check_threads(fn, num_threads)
    out, s, z = _core.aten_add_scalar(q.data, q.scale, q.zero_point, c, r, cap, nt)
    return q.make(out, s, int(z))


def mul_scalar(x: Any, other: Any, *, relu: Any = False) -> Any:
    """quantized::mul.Scalar / mul_relu.Scalar (BinaryOps.cpp _mul_scalar_out): the bytes are kept
    or mirrored and the output qparams carry the scalar."""
    fn = "mul_scalar"
    q = _Q(fn, "x", x)
    c = check_float(fn, "other", other)
    r = check_bool(fn, "relu", relu)
    s_new = abs(c) * q.scale
    if c != 0.0 and not (_F32_TINY_CHECK <= s_new <= _F32_MAX_CHECK):
        raise ValueError(f"{fn}: other={c!r} gives the output scale {s_new!r} (must be a normal float32)")
    out, s, z = _core.aten_mul_scalar(q.data, q.scale, q.zero_point, c, r)
    return q.make(out, s, int(z))


_F32_TINY_CHECK = float(np.finfo(np.float32).tiny)
_F32_MAX_CHECK = float(np.finfo(np.float32).max)


def _unary(fn: str, op: int, x: Any, scale: float, zero_point: int, arg0: float, arg1: float, q: _Q,
           capability: Any, num_threads: Any, arg2: float = 0.0, contiguous_out: bool = False) -> Any:
    cap = check_capability(fn, capability)
    nt = check_threads(fn, num_threads)
    if contiguous_out and q.layout != "contiguous":
        # a contiguous output of a channels_last input: the operands' strides differ, so
        # cpu_kernel_vec runs the scalar op on every element (in the output's, logical, order)
        out = _core.aten_unary(op, q.nchw(), q.scale, q.zero_point, scale, zero_point, arg0, arg1, cap, nt,
                               arg2, True)
        return q.make(out, scale, zero_point, "contiguous")
    out = _core.aten_unary(op, q.data, q.scale, q.zero_point, scale, zero_point, arg0, arg1, cap, nt, arg2)
    return q.make(out, scale, zero_point, "contiguous" if contiguous_out else None)


def hardswish(x: Any, *, scale: Any, zero_point: Any, capability: Any = None, num_threads: Any = None) -> Any:
    """quantized::hardswish (qhardswish_kernel)."""
    q = _Q("hardswish", "x", x)
    s, z = _out_qparams("hardswish", q, scale, zero_point)
    return _unary("hardswish", 0, x, s, z, 0.0, 0.0, q, capability, num_threads)


def hardsigmoid(x: Any, *, capability: Any = None, num_threads: Any = None) -> Any:
    """Tensor.hardsigmoid on a quantized tensor (qhardsigmoid_kernel): output scale 1/256,
    zero point 0 (quint8) or -128 (qint8)."""
    q = _Q("hardsigmoid", "x", x)
    z = -128 if q.dtype == "qint8" else 0
    return _unary("hardsigmoid", 1, x, 0.00390625, z, 0.0, 0.0, q, capability, num_threads)


def sigmoid(x: Any, *, scale: Any = None, zero_point: Any = None, capability: Any = None,
            num_threads: Any = None) -> Any:
    """quantized::sigmoid (qsigmoid_kernel); scale/zero_point None: torch.sigmoid's output qparams
    (1/256 with zero point 0 for quint8, -128 for qint8)."""
    fn = "sigmoid"
    q = _Q(fn, "x", x)
    if (scale is None) != (zero_point is None):
        raise ValueError(f"{fn}: scale={scale!r}, zero_point={zero_point!r} (give both or neither)")
    if scale is None:
        s, z = 0.00390625, (-128 if q.dtype == "qint8" else 0)
    else:
        s, z = _out_qparams(fn, q, scale, zero_point)
    return _unary(fn, 4, x, s, z, 0.0, 0.0, q, capability, num_threads)


def tanh(x: Any, *, capability: Any = None, num_threads: Any = None) -> Any:
    """torch.tanh on a quantized tensor (qtanh_kernel): output scale 2/256, zero point 128
    (quint8) or 0 (qint8); SIMD body with SLEEF's tanhf_u10 under AVX2/AVX512."""
    q = _Q("tanh", "x", x)
    z = 0 if q.dtype == "qint8" else 128
    return _unary("tanh", 5, x, 0.0078125, z, 0.0, 0.0, q, capability, num_threads)


def elu(x: Any, *, scale: Any, zero_point: Any, alpha: Any = 1.0, coef: Any = 1.0, input_coef: Any = 1.0,
        capability: Any = None, num_threads: Any = None) -> Any:
    """quantized::elu (qelu_kernel): ``x > 0 ? x : alpha * (exp(x * input_coef) - 1)``, times
    ``coef`` (torch's ELU "scale" and "input_scale" coefficients; 1 for plain ELU)."""
    fn = "elu"
    q = _Q(fn, "x", x)
    s, z = _out_qparams(fn, q, scale, zero_point)
    a = check_float(fn, "alpha", alpha)
    c = check_float(fn, "coef", coef)
    ic = check_float(fn, "input_coef", input_coef)
    # quantized_elu allocates its output contiguous whatever x's memory format
    return _unary(fn, 6, x, s, z, a, c, q, capability, num_threads, ic, contiguous_out=True)


def celu(x: Any, *, scale: Any, zero_point: Any, alpha: Any = 1.0, capability: Any = None,
         num_threads: Any = None) -> Any:
    """quantized::celu: quantized elu with input coefficient ``1.0 / alpha`` (qelu_kernel)."""
    a = check_float("celu", "alpha", alpha)
    if a == 0.0:
        raise ValueError("celu: alpha=0.0 (must be nonzero: the input is divided by it)")
    return elu(x, scale=scale, zero_point=zero_point, alpha=a, coef=1.0, input_coef=1.0 / a,
               capability=capability, num_threads=num_threads)


_GELU_APPROX = {"none": 7, "tanh": 8}


def gelu(x: Any, *, approximate: Any = "none", capability: Any = None, num_threads: Any = None) -> Any:
    """torch.nn.functional.gelu on a quantized tensor (qgelu_kernel): x's qparams (the scale
    rounded to float32); the body uses
    ATen's vectorized erf (a polynomial with SLEEF's expf_u10) or SLEEF's tanhf_u10."""
    fn = "gelu"
    q = _Q(fn, "x", x)
    if approximate not in _GELU_APPROX:
        raise ValueError(f"{fn}: approximate={approximate!r} (must be 'none' or 'tanh')")
    # the output scale is x's, as the kernel's float32 copy of it
    s = float(np.float32(q.scale))
    return _unary(fn, _GELU_APPROX[approximate], x, s, q.zero_point, 0.0, 0.0, q, capability, num_threads)


def leaky_relu(x: Any, *, negative_slope: Any = 0.01, scale: Any, zero_point: Any, capability: Any = None,
               num_threads: Any = None) -> Any:
    """quantized::leaky_relu (leaky_qrelu_out_kernel)."""
    fn = "leaky_relu"
    q = _Q(fn, "x", x)
    ns = check_float(fn, "negative_slope", negative_slope)
    s, z = _out_qparams(fn, q, scale, zero_point)
    return _unary(fn, 2, x, s, z, ns, 0.0, q, capability, num_threads)


def threshold(x: Any, *, threshold: Any, value: Any, capability: Any = None, num_threads: Any = None) -> Any:
    """torch.nn.functional.threshold on a quantized tensor (qthreshold_kernel); x's qparams."""
    fn = "threshold"
    q = _Q(fn, "x", x)
    t = check_float(fn, "threshold", threshold)
    v = check_float(fn, "value", value)
    return _unary(fn, 3, x, q.scale, q.zero_point, t, v, q, capability, num_threads)


def clamp(x: Any, *, min: Any = None, max: Any = None) -> Any:
    """torch.clamp on a quantized tensor (qclamp_kernel): bounds quantized with x's qparams."""
    fn = "clamp"
    q = _Q(fn, "x", x)
    lo = None if min is None else check_float(fn, "min", min)
    hi = None if max is None else check_float(fn, "max", max)
    if lo is None and hi is None:
        raise ValueError(f"{fn}: min=None and max=None (at least one bound must be given)")
    out = _core.aten_clamp(q.data, q.scale, q.zero_point, lo, hi)
    return q.make(out, q.scale, q.zero_point)


def hardtanh(x: Any, *, min_val: Any = -1.0, max_val: Any = 1.0) -> Any:
    """torch.nn.functional.hardtanh on a quantized tensor: clamp(min_val, max_val)."""
    return clamp(x, min=min_val, max=max_val)


def relu6(x: Any) -> Any:
    """torch.nn.functional.relu6 on a quantized tensor: clamp to [0, 6] in the quantized domain."""
    return clamp(x, min=0.0, max=6.0)


# ---------------------------------------------------------------------------
# concatenation


def cat(xs: Sequence[Any], *, dim: Any, scale: Any, zero_point: Any, relu: Any = False, capability: Any = None,
        num_threads: Any = None) -> Any:
    """quantized::cat (qconcat.cpp quantized_cat_impl): channels_last 4-d inputs along dim 1 use
    qcat_nhwc_kernel; otherwise quantize_per_tensor(cat(dequantize(x) for x in xs))."""
    fn = "cat"
    if not isinstance(xs, (list, tuple)) or len(xs) == 0:
        raise ValueError(f"{fn}: xs={xs!r} (must be a non-empty list of quantized tensors)")
    qs = [_Q(fn, f"xs[{i}]", x) for i, x in enumerate(xs)]
    q0 = qs[0]
    for i, q in enumerate(qs):
        if q.torch != q0.torch or q.dtype != q0.dtype:
            raise TypeError(f"{fn}: xs[{i}] differs from xs[0] in kind or dtype (must all match)")
        if len(q.shape) != len(q0.shape):
            raise ValueError(f"{fn}: xs[{i}] has {len(q.shape)} dims and xs[0] {len(q0.shape)} (must be equal)")
    nd = len(q0.shape)
    d = check_int(fn, "dim", dim, -nd, nd - 1) % nd
    for i, q in enumerate(qs):
        for k in range(nd):
            if k != d and q.shape[k] != q0.shape[k]:
                raise ValueError(f"{fn}: xs[{i}] has shape {q.shape}, xs[0] {q0.shape} (must match except in dim {d})")
    s, z = _out_qparams(fn, q0, scale, zero_point)
    r = check_bool(fn, "relu", relu)
    cap = check_capability(fn, capability)
    nt = check_threads(fn, num_threads)
    if q0.torch and nd == 4 and d == 1 and all(q.layout == "nhwc" for q in qs):
        out = _core.aten_cat_nhwc([q.data for q in qs], s, z, [q.scale for q in qs], [q.zero_point for q in qs], r, cap)
        return q0.make(out, s, z, "nhwc")
    deq = [_core.aten_dequantize_per_tensor(q.nchw(), q.scale, q.zero_point) for q in qs]
    f = np.ascontiguousarray(np.concatenate(deq, axis=d))
    out = _core.aten_quantize_per_tensor(f, s, z, q0.dtype == "qint8", nt)
    if r:
        out = np.maximum(out, np.array(z, dtype=out.dtype))
    return q0.make(out, s, z, "contiguous")


def prelu(x: Any, weight: Any, *, scale: Any, zero_point: Any) -> Any:
    """quantized::prelu (qprelu_out_kernel): weight a quantized tensor with 1 or C values."""
    fn = "prelu"
    q = _Q(fn, "x", x)
    w = _Q(fn, "weight", weight)
    if w.torch != q.torch or w.dtype != q.dtype:
        raise TypeError(f"{fn}: weight differs from x in kind or dtype (must match)")
    if len(q.shape) == 0:
        raise ValueError(f"{fn}: x is 0-d (must have at least 1 dim)")
    C = q.shape[1] if len(q.shape) > 1 else 1
    wd = w.nchw().reshape(-1)
    if wd.size == 1:
        wd = np.repeat(wd, C)
    if wd.size != C:
        raise ValueError(f"{fn}: weight has {w.data.size} values (must be 1 or {C}, one per channel)")
    s, z = _out_qparams(fn, q, scale, zero_point)
    a = q.nchw()
    outer = a.shape[0] if a.ndim > 1 else 1
    inner = int(np.prod(a.shape[2:], dtype=np.int64)) if a.ndim > 1 else a.shape[0]
    if a.ndim == 1:
        C = 1
        wd = wd[:1]
    out = _core.aten_prelu(a, outer, C, inner, np.ascontiguousarray(wd), q.scale, q.zero_point, w.scale,
                           w.zero_point, s, z)
    return _back(q, out, s, z)


def channel_shuffle(x: Any, *, groups: Any) -> Any:
    """channel_shuffle on a quantized tensor (qchannel_shuffle.cpp): a permutation of the channels,
    (N, g, C/g, ...) -> (N, C/g, g, ...); no arithmetic. x's qparams and memory format."""
    fn = "channel_shuffle"
    q = _Q(fn, "x", x)
    if len(q.shape) < 3:
        raise ValueError(f"{fn}: x has shape {q.shape} (must have at least 3 dims)")
    if q.dtype != "quint8":
        raise TypeError(f"{fn}: x has dtype {q.dtype} (must be quint8: torch's quantized channel_shuffle "
                        "supports only quint8)")
    C = q.shape[1]
    g = check_int(fn, "groups", groups, 1, C)
    if C % g:
        raise ValueError(f"{fn}: groups={g} does not divide the {C} channels (must divide them)")
    a = q.nchw()
    out = a.reshape((a.shape[0], g, C // g) + a.shape[2:]).swapaxes(1, 2).reshape(a.shape)
    return _back(q, np.ascontiguousarray(out), q.scale, q.zero_point)


# ---------------------------------------------------------------------------
# pooling


def _pool_out(fn: str, size: int, k: int, p: int, s: int, d: int, ceil_mode: bool) -> int:
    num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    o = num // s + 1  # div_rtn
    if ceil_mode and (o - 1) * s >= size + p:
        o -= 1
    if o < 1:
        raise ValueError(f"{fn}: input size {size} with kernel {k}, padding {p}, stride {s}, dilation {d} "
                         f"gives output size {o} (must be >= 1)")
    return o


def _spatial(fn: str, q: _Q, nsp: int) -> np.ndarray:
    if len(q.shape) not in (nsp + 1, nsp + 2):
        raise ValueError(f"{fn}: x has shape {q.shape} (must have {nsp + 1} or {nsp + 2} dims)")
    return q.nchw()


def _pool_sizes(fn: str, n: int, x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> tuple:
    """x checked (n + 1 or n + 2 dims), and kernel_size, stride (kernel_size when None or empty), padding,
    dilation as lists of ``n`` ints."""
    q = _Q(fn, "x", x)
    if len(q.shape) not in (n + 1, n + 2):
        raise ValueError(f"{fn}: x has shape {q.shape} (must have {n + 1} or {n + 2} dims)")
    k = check_size_list(fn, "kernel_size", kernel_size, n, 1)
    st = k if stride is None or stride == [] or stride == () else check_size_list(fn, "stride", stride, n, 1)
    return q, (k, st, check_size_list(fn, "padding", padding, n, 0), check_size_list(fn, "dilation", dilation, n, 1))


def max_pool2d(x: Any, *, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: Any = False) -> Any:
    """quantized max_pool2d (Pooling.cpp): max over the in-bounds taps; x's qparams."""
    fn = "max_pool2d"
    q, (k, st, p, dl) = _pool_sizes(fn, 2, x, kernel_size, stride, padding, dilation)
    cm = check_bool(fn, "ceil_mode", ceil_mode)
    for i in range(2):
        if p[i] > k[i] // 2:
            raise ValueError(f"{fn}: padding={p} (must be at most half of kernel_size={k})")
    H, W = q.shape[-2:]
    oh = _pool_out(fn, H, k[0], p[0], st[0], dl[0], cm)
    ow = _pool_out(fn, W, k[1], p[1], st[1], dl[1], cm)
    if q.layout == "nhwc":  # the channels-last bytes in place, no transposes
        out = _core.aten_max_pool2d(q.data, oh, ow, k[0], k[1], st[0], st[1], p[0], p[1], dl[0], dl[1])
        return q.make(out, q.scale, q.zero_point)
    a = q.nchw()
    planes = a.reshape(-1, H, W)
    out = _core.aten_max_pool2d(planes, oh, ow, k[0], k[1], st[0], st[1], p[0], p[1], dl[0], dl[1])
    out = out.reshape(a.shape[:-2] + (oh, ow))
    return _back(q, out, q.scale, q.zero_point)


def max_pool1d(x: Any, *, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: Any = False) -> Any:
    """quantized max_pool1d: max_pool2d over (1, W)."""
    fn = "max_pool1d"
    q, sizes = _pool_sizes(fn, 1, x, kernel_size, stride, padding, dilation)
    k, st, p, dl = (v[0] for v in sizes)
    cm = check_bool(fn, "ceil_mode", ceil_mode)
    if p > k // 2:
        raise ValueError(f"{fn}: padding={p} (must be at most half of kernel_size={k})")
    a = q.nchw()
    W = a.shape[-1]
    ow = _pool_out(fn, W, k, p, st, dl, cm)
    out = _core.aten_max_pool2d(a.reshape(-1, 1, W), 1, ow, 1, k, 1, st, 0, p, 1, dl)
    return _back(q, out.reshape(a.shape[:-1] + (ow,)), q.scale, q.zero_point)


def _back(q: _Q, out_nchw: np.ndarray, scale: float, zp: int) -> Any:
    """Wrap an NCHW-ordered result in x's kind and memory format."""
    if q.layout == "nhwc":
        return q.make(np.ascontiguousarray(out_nchw.transpose(0, 2, 3, 1)), scale, zp)
    if q.layout == "ndhwc":
        return q.make(np.ascontiguousarray(out_nchw.transpose(0, 2, 3, 4, 1)), scale, zp)
    return q.make(out_nchw, scale, zp)


def _avg_pool_args(fn: str, nd: int, kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any,
                   count_include_pad: Any, divisor_override: Any, capability: Any) -> tuple:
    """avg_pool{nd}d's validated arguments: (kernel, stride, padding, ceil_mode,
    count_include_pad, divisor (0: none), capability)."""
    k = check_size_list(fn, "kernel_size", kernel_size, nd, 1)
    st = k if stride is None or stride == [] or stride == () else check_size_list(fn, "stride", stride, nd, 1)
    p = check_size_list(fn, "padding", padding, nd, 0)
    cm = check_bool(fn, "ceil_mode", ceil_mode)
    cip = check_bool(fn, "count_include_pad", count_include_pad)
    dv = 0 if divisor_override is None else check_int(fn, "divisor_override", divisor_override, 1, (1 << 31) - 1)
    cap = check_capability(fn, capability)
    for i in range(nd):
        if p[i] > k[i] // 2:
            raise ValueError(f"{fn}: padding={p} (must be at most half of kernel_size={k})")
    return k, st, p, cm, cip, dv, cap


def avg_pool2d(x: Any, *, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: Any = False,
               count_include_pad: Any = True, divisor_override: Any = None, capability: Any = None) -> Any:
    """quantized avg_pool2d (q_avgpool.cpp): NCHW avg_pool2d_out_frame, channels_last
    qavg_pool2d_nhwc_kernel (capability-dependent rounding); x's qparams."""
    fn = "avg_pool2d"
    q = _Q(fn, "x", x)
    a = _spatial(fn, q, 2)
    k, st, p, cm, cip, dv, cap = _avg_pool_args(fn, 2, kernel_size, stride, padding, ceil_mode,
                                                count_include_pad, divisor_override, capability)
    H, W = a.shape[-2:]
    oh = _pool_out(fn, H, k[0], p[0], st[0], 1, cm)
    ow = _pool_out(fn, W, k[1], p[1], st[1], 1, cm)
    if q.layout == "nhwc":
        d5 = q.data[:, None]
        out = _core.aten_avg_pool_nhwc(d5, [1, oh, ow], [1, k[0], k[1]], [1, st[0], st[1]], [0, p[0], p[1]], cip, dv,
                                       q.scale, q.zero_point, q.scale, q.zero_point, cap)
        return q.make(out[:, 0], q.scale, q.zero_point)
    out = _core.aten_avg_pool2d_nchw(a.reshape(-1, H, W), oh, ow, k[0], k[1], st[0], st[1], p[0], p[1], cip, dv,
                                     q.scale, q.zero_point, q.scale, q.zero_point)
    return q.make(out.reshape(a.shape[:-2] + (oh, ow)), q.scale, q.zero_point)


def avg_pool3d(x: Any, *, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: Any = False,
               count_include_pad: Any = True, divisor_override: Any = None, capability: Any = None) -> Any:
    """quantized avg_pool3d (q_avgpool3d.cpp): the NDHWC kernel (qavg_pool3d_nhwc_kernel); x's qparams."""
    fn = "avg_pool3d"
    q = _Q(fn, "x", x)
    if len(q.shape) != 5:
        raise ValueError(f"{fn}: x has shape {q.shape} (must be 5-d)")
    k, st, p, cm, cip, dv, cap = _avg_pool_args(fn, 3, kernel_size, stride, padding, ceil_mode,
                                                count_include_pad, divisor_override, capability)
    a = q.nchw()
    osz = [_pool_out(fn, a.shape[2 + i], k[i], p[i], st[i], 1, cm) for i in range(3)]
    nd = np.ascontiguousarray(a.transpose(0, 2, 3, 4, 1))
    out = _core.aten_avg_pool_nhwc(nd, osz, list(k), list(st), list(p), cip, dv, q.scale, q.zero_point, q.scale,
                                   q.zero_point, cap)
    return q.make(np.ascontiguousarray(out.transpose(0, 4, 1, 2, 3)) if q.layout != "ndhwc" else out,
                  q.scale, q.zero_point)


def _adaptive(fn: str, x: Any, output_size: Any, nsp: int, capability: Any) -> Any:
    q = _Q(fn, "x", x)
    cap = check_capability(fn, capability)
    a = _spatial(fn, q, nsp)
    osz = check_size_list(fn, "output_size", output_size, nsp, 1)
    if q.layout in ("nhwc", "ndhwc"):
        d5 = q.data if nsp == 3 else q.data[:, None]
        o3 = osz if nsp == 3 else (1,) + osz
        out = _core.aten_adaptive_avg_pool_nhwc(d5, o3[0], o3[1], o3[2], q.scale, q.zero_point, q.scale, q.zero_point,
                                                cap)
        return q.make(out if nsp == 3 else out[:, 0], q.scale, q.zero_point)
    sp = a.shape[-nsp:]
    planes = a.reshape((-1, 1) + sp if nsp == 2 else (-1,) + sp)
    o3 = osz if nsp == 3 else (1,) + osz
    out = _core.aten_adaptive_avg_pool_nchw(planes, o3[0], o3[1], o3[2])
    return q.make(out.reshape(a.shape[:-nsp] + osz), q.scale, q.zero_point)


def adaptive_avg_pool2d(x: Any, *, output_size: Any, capability: Any = None) -> Any:
    """quantized adaptive_avg_pool2d (AdaptiveAveragePooling.cpp); x's qparams."""
    return _adaptive("adaptive_avg_pool2d", x, output_size, 2, capability)


def adaptive_avg_pool3d(x: Any, *, output_size: Any, capability: Any = None) -> Any:
    """quantized adaptive_avg_pool3d (AdaptiveAveragePooling.cpp); x's qparams."""
    return _adaptive("adaptive_avg_pool3d", x, output_size, 3, capability)


def mean(x: Any, *, dim: Any, keepdim: Any = False) -> Any:
    """Tensor.mean over the innermost dims of a contiguous quantized tensor (ReduceOps.cpp fast
    path, qmean_inner_dim_kernel): nearbyint(float(sum) / N); x's qparams."""
    fn = "mean"
    q = _Q(fn, "x", x)
    nd = len(q.shape)
    dims = list(dim) if isinstance(dim, (list, tuple)) else [dim]
    if not dims:
        raise ValueError(f"{fn}: dim={dim!r} is empty (must name the dims to reduce)")
    ds = sorted({check_int(fn, "dim", d, -nd, nd - 1) % nd for d in dims})
    if ds != list(range(nd - len(ds), nd)):
        raise ValueError(f"{fn}: dim={dim!r} (must be the innermost dims: other dims take ATen's float fallback, "
                         "which qref does not reproduce)")
    if q.layout != "contiguous":
        raise ValueError(f"{fn}: x is {q.layout} (must be contiguous: the fast path ATen takes)")
    kd = check_bool(fn, "keepdim", keepdim)
    inner = int(np.prod(q.shape[nd - len(ds):], dtype=np.int64))
    outer = int(np.prod(q.shape[:nd - len(ds)], dtype=np.int64))
    out = _core.aten_mean_inner(q.data, outer, inner)
    shape = q.shape[:nd - len(ds)] + ((1,) * len(ds) if kd else ())
    return q.make(out.reshape(shape), q.scale, q.zero_point)


# ---------------------------------------------------------------------------
# resampling


def _resample_size(fn: str, a: np.ndarray, size: Any, scale_factor: Any) -> tuple[int, int, float, float]:
    H, W = a.shape[-2:]
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{fn}: size={size!r}, scale_factor={scale_factor!r} (exactly one must be given)")
    if size is not None:
        oh, ow = check_size_list(fn, "size", size, 2, 1)
        return oh, ow, 0.0, 0.0
    if isinstance(scale_factor, (list, tuple)):
        if len(scale_factor) != 2:
            raise ValueError(f"{fn}: scale_factor={scale_factor!r} (must be a number or 2 numbers)")
        sh, sw = (check_float(fn, "scale_factor", v) for v in scale_factor)
    else:
        sh = sw = check_float(fn, "scale_factor", scale_factor)
    if sh <= 0 or sw <= 0:
        raise ValueError(f"{fn}: scale_factor={scale_factor!r} (must be > 0)")
    oh, ow = math.floor(H * sh), math.floor(W * sw)
    if oh < 1 or ow < 1:
        raise ValueError(f"{fn}: scale_factor={scale_factor!r} gives output size ({oh}, {ow}) (must be >= 1)")
    return oh, ow, sh, sw


def upsample_nearest2d(x: Any, *, size: Any = None, scale_factor: Any = None) -> Any:
    """F.interpolate(mode='nearest') on a quantized tensor (UpSampleNearest2d.cpp): a gather by
    nearest_idx; x's qparams."""
    fn = "upsample_nearest2d"
    q = _Q(fn, "x", x)
    if len(q.shape) != 4:
        raise ValueError(f"{fn}: x has shape {q.shape} (must be 4-d)")
    a = q.nchw()
    oh, ow, sh, sw = _resample_size(fn, a, size, scale_factor)
    N, C, H, W = a.shape
    out = _core.aten_upsample_nearest2d(a.reshape(N * C, H, W), oh, ow, sh, sw)
    return _back(q, out.reshape(N, C, oh, ow), q.scale, q.zero_point)


def upsample_bilinear2d(x: Any, *, size: Any = None, scale_factor: Any = None, align_corners: Any = False,
                        capability: Any = None) -> Any:
    """F.interpolate(mode='bilinear') on a quantized tensor (UpSampleBilinear2d.cpp; channels_last:
    qupsample_bilinear2d_nhwc_kernel, FMA-contracted under AVX2/AVX512); x's qparams."""
    fn = "upsample_bilinear2d"
    q = _Q(fn, "x", x)
    cap = check_capability(fn, capability)
    if len(q.shape) != 4:
        raise ValueError(f"{fn}: x has shape {q.shape} (must be 4-d)")
    ac = check_bool(fn, "align_corners", align_corners)
    a = q.nchw()
    oh, ow, sh, sw = _resample_size(fn, a, size, scale_factor)
    N, C, H, W = a.shape
    out = _core.aten_upsample_bilinear2d(a.reshape(N * C, H, W), oh, ow, ac, sh, sw, q.scale, q.zero_point, q.scale,
                                         q.zero_point, q.layout == "nhwc" and cap != 0)
    return _back(q, out.reshape(N, C, oh, ow), q.scale, q.zero_point)


__all__: list[str] = [
    "QTensor",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "add",
    "add_relu",
    "add_scalar",
    "avg_pool2d",
    "avg_pool3d",
    "batch_norm",
    "cat",
    "celu",
    "channel_shuffle",
    "clamp",
    "dequantize",
    "elu",
    "gelu",
    "group_norm",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "instance_norm",
    "layer_norm",
    "leaky_relu",
    "linear_dynamic",
    "max_pool1d",
    "max_pool2d",
    "mean",
    "mul",
    "mul_relu",
    "mul_scalar",
    "prelu",
    "quantize_per_channel",
    "quantize_per_tensor",
    "relu6",
    "sigmoid",
    "softmax",
    "tanh",
    "threshold",
    "upsample_bilinear2d",
    "upsample_nearest2d",
]


# ---------------------------------------------------------------------------
# normalization


def _f32vec(fn: str, name: str, v: Any, C: int, optional: bool = False) -> np.ndarray | None:
    if v is None:
        if optional:
            return None
        raise ValueError(f"{fn}: {name}=None (must be {C} float32 values)")
    a = v.detach().numpy() if is_torch(v) else np.asarray(v)
    if a.dtype != np.float32:
        raise TypeError(f"{fn}: {name} has dtype {a.dtype} (must be float32, as torch's BatchNorm stores it)")
    a = np.ascontiguousarray(a.reshape(-1))
    if a.size != C:
        raise ValueError(f"{fn}: {name} has {a.size} values (must be {C}, one per channel)")
    return a


def batch_norm(x: Any, *, weight: Any, bias: Any, mean: Any, var: Any, eps: Any, scale: Any, zero_point: Any,
               relu: Any = False, capability: Any = None) -> Any:
    """quantized::batch_norm2d / batch_norm2d_relu (and 1d/3d): Normalization.cpp
    compute_fused_params, then q_batch_norm_kernel on channels_last data."""
    fn = "batch_norm"
    q = _Q(fn, "x", x)
    if len(q.shape) not in (2, 3, 4, 5):
        raise ValueError(f"{fn}: x has shape {q.shape} (must be 2-d to 5-d, channels in dim 1)")
    C = q.shape[1]
    w = _f32vec(fn, "weight", weight, C, optional=True)
    b = _f32vec(fn, "bias", bias, C, optional=True)
    m = _f32vec(fn, "mean", mean, C)
    v = _f32vec(fn, "var", var, C)
    e = check_float(fn, "eps", eps)
    if e < 0:
        raise ValueError(f"{fn}: eps={e!r} is negative (must be >= 0)")
    s, z = _out_qparams(fn, q, scale, zero_point)
    r = check_bool(fn, "relu", relu)
    cap = check_capability(fn, capability)
    a = q.nchw()
    nhwc = np.ascontiguousarray(np.moveaxis(a, 1, -1)).reshape(-1, C)
    out = _core.aten_batch_norm_nhwc(nhwc, w, b, m, v, e, q.scale, q.zero_point, s, z, r, cap)
    res = np.moveaxis(out.reshape((a.shape[0],) + a.shape[2:] + (C,)), -1, 1)
    if q.torch:
        if len(q.shape) == 4:
            return q.make(np.ascontiguousarray(out.reshape(a.shape[0], a.shape[2], a.shape[3], C)), s, z, "nhwc")
        if len(q.shape) == 5:
            return q.make(np.ascontiguousarray(out.reshape(a.shape[0], *a.shape[2:], C)), s, z, "ndhwc")
    return q.make(np.ascontiguousarray(res), s, z, "contiguous")


def _norm_common(fn: str, x: Any, scale: Any, zero_point: Any, eps: Any, capability: Any):
    q = _Q(fn, "x", x)
    if q.layout != "contiguous":
        raise ValueError(f"{fn}: x is {q.layout} (must be contiguous: the channels_last kernel is not reproduced)")
    e = check_float(fn, "eps", eps)
    if e < 0:
        raise ValueError(f"{fn}: eps={e!r} is negative (must be >= 0)")
    s, z = _out_qparams(fn, q, scale, zero_point)
    return q, e, s, z, check_capability(fn, capability)


def layer_norm(x: Any, *, normalized_shape: Any, weight: Any = None, bias: Any = None, eps: Any = 1e-5, scale: Any,
               zero_point: Any, capability: Any = None) -> Any:
    """quantized::layer_norm (quantized_normalize_kernel, elementwise affine)."""
    fn = "layer_norm"
    q, e, s, z, cap = _norm_common(fn, x, scale, zero_point, eps, capability)
    ns = tuple(normalized_shape) if isinstance(normalized_shape, (list, tuple)) else (normalized_shape,)
    ns = tuple(check_int(fn, "normalized_shape", d, 1) for d in ns)
    if len(ns) == 0 or len(ns) > len(q.shape) or tuple(q.shape[len(q.shape) - len(ns):]) != ns:
        raise ValueError(f"{fn}: normalized_shape={ns} (must be the trailing dims of x's shape {q.shape})")
    N = int(np.prod(ns, dtype=np.int64))
    M = q.data.size // N
    g = _f32vec(fn, "weight", weight, N, optional=True)
    b = _f32vec(fn, "bias", bias, N, optional=True)
    out = _core.aten_normalize(q.data, M, N, g, b, False, 1, 1, e, q.scale, q.zero_point, s, z, cap)
    return q.make(out, s, z)


def group_norm(x: Any, *, num_groups: Any, weight: Any = None, bias: Any = None, eps: Any = 1e-5, scale: Any,
               zero_point: Any, capability: Any = None) -> Any:
    """quantized::group_norm on contiguous x (quantized_normalize_kernel, per-channel affine)."""
    fn = "group_norm"
    q, e, s, z, cap = _norm_common(fn, x, scale, zero_point, eps, capability)
    if len(q.shape) < 2:
        raise ValueError(f"{fn}: x has shape {q.shape} (must have a channel dim)")
    C = q.shape[1]
    G = check_int(fn, "num_groups", num_groups, 1, C)
    if C % G:
        raise ValueError(f"{fn}: num_groups={G} does not divide the {C} channels (must divide them)")
    g = _f32vec(fn, "weight", weight, C, optional=True)
    b = _f32vec(fn, "bias", bias, C, optional=True)
    M = q.shape[0] * G
    N = q.data.size // M
    out = _core.aten_normalize(q.data, M, N, g, b, True, C, G, e, q.scale, q.zero_point, s, z, cap)
    return q.make(out, s, z)


def instance_norm(x: Any, *, weight: Any = None, bias: Any = None, eps: Any = 1e-5, scale: Any, zero_point: Any,
                  capability: Any = None) -> Any:
    """quantized::instance_norm on contiguous x: group_norm with one group per channel."""
    q = _Q("instance_norm", "x", x)
    if len(q.shape) < 2:
        raise ValueError(f"instance_norm: x has shape {q.shape} (must have a channel dim)")
    return group_norm(x, num_groups=q.shape[1], weight=weight, bias=bias, eps=eps, scale=scale,
                      zero_point=zero_point, capability=capability)


# ---------------------------------------------------------------------------
# dynamic quantization


def linear_dynamic(x: Any, weight: Any, bias: Any = None, *, reduce_range: Any = True, relu: Any = False) -> Any:
    """quantized::linear_dynamic / linear_relu_dynamic with fbgemm's packed weights (what
    ``torch.ao.quantization.quantize_dynamic``'s Linear runs under the "fbgemm" and "x86"
    engines): x's min/max give its uint8 qparams (ChooseQuantizationParams, 7 bits with
    reduce_range), x is quantized, multiplied with the int8 weight in int32 and the sum scaled
    back to float: ``float(acc) * float(x_scale * w_scale) + bias``.

    x: a float32 torch tensor or numpy array (..., K); weight: a torch qint8 tensor (N, K),
    per tensor or per channel along 0; bias: None or N floats. Returns a float32 tensor (numpy
    array for numpy x) of shape (..., N)."""
    import torch

    fn = "linear_dynamic"
    rr = check_bool(fn, "reduce_range", reduce_range)
    rl = check_bool(fn, "relu", relu)
    if not (isinstance(weight, torch.Tensor) and weight.dtype == torch.qint8 and weight.dim() == 2):
        raise TypeError(f"{fn}: weight must be a 2-d torch.qint8 tensor, got "
                        f"{getattr(weight, 'dtype', type(weight).__name__)}")
    if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        scales = np.array([weight.q_scale()], np.float32)
        zps = np.array([weight.q_zero_point()], np.int32)
    elif weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric) and weight.q_per_channel_axis() == 0:
        scales = weight.q_per_channel_scales().numpy().astype(np.float32)
        zps = weight.q_per_channel_zero_points().numpy().astype(np.int32)
    else:
        raise ValueError(f"{fn}: weight has qscheme {weight.qscheme()} (must be per tensor or per channel along 0)")
    w = np.ascontiguousarray(weight.int_repr().numpy())
    is_t = isinstance(x, torch.Tensor)
    xa = x.detach().contiguous().numpy() if is_t else np.asarray(x)
    if xa.dtype != np.float32:
        raise TypeError(f"{fn}: x has dtype {xa.dtype} (must be float32)")
    if xa.ndim < 1 or xa.shape[-1] != w.shape[1]:
        raise ValueError(f"{fn}: x has shape {tuple(xa.shape)} (its last dimension must be the weight's "
                         f"{w.shape[1]} input features)")
    if not np.all(np.isfinite(xa)):
        raise ValueError(f"{fn}: x holds NaN or infinite values (its dynamic qparams would be undefined)")
    b = None
    if bias is not None:
        b = np.ascontiguousarray((bias.detach().numpy() if isinstance(bias, torch.Tensor) else np.asarray(bias)),
                                 dtype=np.float32).reshape(-1)
        if b.size != w.shape[0]:
            raise ValueError(f"{fn}: bias has {b.size} values (must be {w.shape[0]}, one per output feature)")
    out, _, _ = _core.aten_linear_dynamic(np.ascontiguousarray(xa), w, scales, zps, b, rr, rl)
    return torch.from_numpy(out) if is_t else out


def softmax(x: Any, *, dim: Any, scale: Any, zero_point: Any, capability: Any = None) -> Any:
    """quantized::softmax (qsoftmax.cpp): ``quantize_per_tensor(softmax(dequantize(x), dim))``
    with torch's float softmax over the last dimension (SoftMaxKernel.cpp _vec_softmax_lastdim:
    Vectorized exp and vec::reduce_all's summation order, per capability). ``dim`` must be the
    last dimension of a contiguous x (or a dimension after which all sizes are 1); other dims run
    another float kernel and are refused with a ValueError."""
    fn = "softmax"
    q = _Q(fn, "x", x)
    nd = len(q.shape)
    d = check_int(fn, "dim", dim, -nd, nd - 1) % nd if nd else 0
    if nd == 0 or any(v != 1 for v in q.shape[d + 1:]):
        raise ValueError(f"{fn}: dim={dim!r} over shape {q.shape} (qref reproduces the softmax over the last "
                         f"dimension only: ATen runs another float kernel for inner dims)")
    if q.layout != "contiguous":
        raise ValueError(f"{fn}: x is {q.layout} (must be contiguous: qref reproduces the contiguous last-dim "
                         f"kernel only)")
    s, z = _out_qparams(fn, q, scale, zero_point)
    cap = check_capability(fn, capability)
    data = q.data.reshape(-1, q.shape[d]) if nd else q.data
    out = _core.aten_softmax_lastdim(np.ascontiguousarray(data), q.scale, q.zero_point, s, z, cap)
    return q.make(out.reshape(q.data.shape), s, z)
