"""qref.engines.mlas: ONNX Runtime's CPU execution provider int8 arithmetic (MLAS), bit for bit.

Plain numpy in, numpy out; the ONNX tool layer (``qref.onnx``) maps graph nodes onto these.
``host``: ``"vnni"`` (AVX512-VNNI / AVX-VNNI hosts: exact int32 accumulation, what this
process's ORT runs on such a CPU) or ``"avx2"`` (AVX2 / AVX512-core hosts without VNNI: the
U8S8 kernels saturate each pair of products to int16, vpmaddubsw). MLAS picks its kernels by
CPUID with no override, so one of the two cannot be run here: its results come from the
formula. See docs/onnxruntime.md.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ... import _core

HOSTS = ("vnni", "avx2")


def _host(host: str) -> int:
    if host not in HOSTS:
        raise ValueError(f"host={host!r}: must be one of {HOSTS}")
    return HOSTS.index(host)


def _q(name: str, a) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.dtype not in (np.uint8, np.int8):
        raise TypeError(f"{name} must be a uint8 or int8 array, got dtype {a.dtype}")
    return a


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _scalar_f32(name: str, v) -> float:
    a = np.asarray(v, dtype=np.float32).reshape(-1)
    if a.size != 1:
        raise ValueError(f"{name} must be a scalar, got {a.size} values")
    f = float(a[0])
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"{name}={f}: must be a finite float32 > 0")
    return f


def _zp(name: str, v, dtype) -> int:
    a = np.asarray(v).reshape(-1)
    if a.size != 1:
        raise ValueError(f"{name} must be a scalar, got {a.size} values")
    z = int(a[0])
    lo, hi = (-128, 127) if np.dtype(dtype) == np.int8 else (0, 255)
    if not lo <= z <= hi:
        raise ValueError(f"{name}={z}: out of range [{lo}, {hi}] for {np.dtype(dtype)}")
    return z


def requantize_output(acc: np.ndarray, bias: Optional[np.ndarray], scale, zero_point: int,
                      out_dtype=np.uint8) -> np.ndarray:
    """MlasRequantizeOutput on a (rows, cols) int32 accumulator: ``rne(clamp(f32(float(acc + bias)
    * scale))) + zero_point``; ``scale`` is one float32 or one per column."""
    acc = np.ascontiguousarray(acc, dtype=np.int32)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32).reshape(-1)
    return _core.mlas_requantize_output(acc=acc, bias=b, scale=_f32(scale).reshape(-1),
                                        zero_point=int(zero_point), out_s8=np.dtype(out_dtype) == np.int8)


def qgemm(a: np.ndarray, a_zero_point: int, bt: np.ndarray, b_zero_point, host: str = "vnni") -> np.ndarray:
    """int32 ``(a - za) @ (bt - zb).T`` as MLAS's QGEMM accumulates it (``bt``: (N, K) rows)."""
    a, bt = _q("a", a), _q("bt", bt)
    zb = np.ascontiguousarray(np.asarray(b_zero_point).reshape(-1), dtype=np.int32)
    return _core.mlas_qgemm(a=a, a_zero_point=int(a_zero_point), bt=bt, b_zero_point=zb, host=_host(host))


def conv2d_int32(x_nhwc: np.ndarray, x_zero_point: int, w: np.ndarray, w_zero_point: int, *, groups: int = 1,
                 strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
                 dilations: Sequence[int] = (1, 1), host: str = "vnni") -> np.ndarray:
    """The int32 accumulators of QLinearConv / ConvInteger, (N, OH, OW, M). ``pads`` in ONNX order
    (top, left, bottom, right). Depthwise convolutions (one input and one output channel per
    group) run MLAS's exact depthwise kernels on every host."""
    x_nhwc, w = _q("x", x_nhwc), _q("w", w)
    depthwise = w.shape[1] == 1 and w.shape[0] == groups
    return _core.mlas_conv2d_int32(
        x_nhwc=x_nhwc, x_zero_point=int(x_zero_point), w=w, w_zero_point=int(w_zero_point), groups=int(groups),
        stride_h=int(strides[0]), stride_w=int(strides[1]), pad_top=int(pads[0]), pad_left=int(pads[1]),
        pad_bottom=int(pads[2]), pad_right=int(pads[3]), dil_h=int(dilations[0]), dil_w=int(dilations[1]),
        host=0 if depthwise else _host(host))


def quantize_linear(x, scale, zero_point, dtype=np.uint8) -> np.ndarray:
    """MlasQuantizeLinear: ``rne(clamp(x / scale, lo - zp, hi - zp)) + zp``."""
    return _core.mlas_quantize_linear(x=_f32(x), scale=_scalar_f32("scale", scale),
                                      zero_point=_zp("zero_point", zero_point, dtype),
                                      out_s8=np.dtype(dtype) == np.int8)


def dequantize_linear(x, scale, zero_point, axis: int = 1) -> np.ndarray:
    """DequantizeLinear: ``float(x - zp) * scale``, per tensor or per ``axis``."""
    x = _q("x", x)
    s = _f32(scale).reshape(-1)
    z = np.ascontiguousarray(np.asarray(zero_point if zero_point is not None else 0).reshape(-1), dtype=np.int32)
    if z.size == 1 and s.size > 1:
        z = np.repeat(z, s.size)
    inner = 1
    if s.size > 1:
        ax = axis % x.ndim
        if x.shape[ax] != s.size:
            raise ValueError(f"scale has {s.size} values but x.shape[{axis}] is {x.shape[ax]}")
        inner = int(np.prod(x.shape[ax + 1:], dtype=np.int64))
    return _core.mlas_dequantize_linear(x=x, scale=s, zero_point=z, inner=max(inner, 1))


def qlinear_binary(op: str, a, sa, za, b, sb, zb, sc, zc) -> np.ndarray:
    """QLinearAdd (``op="add"``) / QLinearMul (``"mul"``) with ONNX broadcasting: the result has
    the broadcast shape; each contiguous run is computed as ORT's span loop does."""
    a, b = _q("a", a), _q("b", b)
    code = {"add": 0, "mul": 1}[op]
    shape = np.broadcast_shapes(a.shape, b.shape)
    kw = dict(op=code, sa=_scalar_f32("a_scale", sa), za=_zp("a_zero_point", za, a.dtype),
              sb=_scalar_f32("b_scale", sb), zb=_zp("b_zero_point", zb, a.dtype),
              sc=_scalar_f32("c_scale", sc), zc=_zp("c_zero_point", zc, a.dtype))
    if a.shape == b.shape or a.size == 1 or b.size == 1:
        return _core.mlas_qlinear_binary(a=a.reshape(-1), b=b.reshape(-1), **kw).reshape(shape)
    # general broadcasting: ORT walks the output in spans where one side is a scalar or both
    # advance together; each element's formula depends only on which side is the scalar.
    A = np.broadcast_to(a, shape)
    B = np.broadcast_to(b, shape)
    out = np.empty(shape, dtype=a.dtype)
    a_stride0 = a.ndim and a.shape[-1] == 1 and shape[-1] != 1
    b_stride0 = b.ndim and b.shape[-1] == 1 and shape[-1] != 1
    for idx in np.ndindex(*shape[:-1]):
        ra, rb = np.ascontiguousarray(A[idx]), np.ascontiguousarray(B[idx])
        if a_stride0:
            ra = ra[:1]
        if b_stride0:
            rb = rb[:1]
        out[idx] = _core.mlas_qlinear_binary(a=ra, b=rb, **kw)
    return out


def lookup_table(kind: str, x_scale, x_zero_point, y_scale, y_zero_point, dtype=np.uint8,
                 alpha: float = 0.01) -> np.ndarray:
    """The 256-byte table of QLinearSigmoid (``kind="sigmoid"``), QLinearLeakyRelu
    (``"leaky_relu"``) or a QLinearConcat input (``"identity"``), indexed by the input byte."""
    code = {"identity": 0, "leaky_relu": 1, "sigmoid": 2}[kind]
    t = _core.mlas_lookup_table(kind=code, alpha=float(np.float32(alpha)), sx=_scalar_f32("x_scale", x_scale),
                                zx=_zp("x_zero_point", x_zero_point, dtype), sy=_scalar_f32("y_scale", y_scale),
                                zy=_zp("y_zero_point", y_zero_point, dtype), s8=np.dtype(dtype) == np.int8)
    return t.view(np.dtype(dtype))


def apply_table(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """QLinearLookupTableTransform: ``y = table[byte of x]``."""
    x = _q("x", x)
    return table[x.view(np.uint8)]


def logistic(x) -> np.ndarray:
    """MlasComputeLogistic's FMA3 kernel on float32 values."""
    return _core.mlas_logistic(x=_f32(x))


def global_average_pool(x: np.ndarray, x_scale, x_zero_point, y_scale, y_zero_point,
                        channels_last: bool = False) -> np.ndarray:
    """QLinearGlobalAveragePool on (N, C, *spatial) (or (N, *spatial, C) with channels_last)."""
    x = _q("x", x)
    if x.ndim < 3:
        raise ValueError(f"x must have at least 3 dimensions, got shape {x.shape}")
    n = x.shape[0]
    c = x.shape[-1] if channels_last else x.shape[1]
    image = x.size // (n * c)
    out = _core.mlas_global_average_pool(
        x=x, batch=n, channels=c, image=image, channels_last=bool(channels_last),
        sx=_scalar_f32("x_scale", x_scale), zx=_zp("x_zero_point", x_zero_point, x.dtype),
        sy=_scalar_f32("y_scale", y_scale), zy=_zp("y_zero_point", y_zero_point, x.dtype))
    spatial = (1,) * (x.ndim - 2)
    return out.reshape((n,) + spatial + (c,)) if channels_last else out.reshape((n, c) + spatial)


def average_pool2d(x, x_scale, x_zero_point, y_scale, y_zero_point, *, kernel: Sequence[int],
                   strides: Sequence[int], pads: Sequence[int], out_hw: Sequence[int],
                   count_include_pad: bool = False, channels_last: bool = False) -> np.ndarray:
    """QLinearAveragePool, 2-D, the float path of qlinear_pool.cc."""
    x = _q("x", x)
    return _core.mlas_average_pool2d(
        x=x, channels_last=bool(channels_last), KH=int(kernel[0]), KW=int(kernel[1]), stride_h=int(strides[0]),
        stride_w=int(strides[1]), pad_top=int(pads[0]), pad_left=int(pads[1]), OH=int(out_hw[0]),
        OW=int(out_hw[1]), count_include_pad=bool(count_include_pad), sx=_scalar_f32("x_scale", x_scale),
        zx=_zp("x_zero_point", x_zero_point, x.dtype), sy=_scalar_f32("y_scale", y_scale),
        zy=_zp("y_zero_point", y_zero_point, x.dtype))


def dynamic_qparams(x) -> tuple:
    """DynamicQuantizeLinear's (scale, zero_point) for a float32 tensor (uint8)."""
    s, z = _core.mlas_dynamic_qparams(x=_f32(x))
    return np.float32(s), np.uint8(z)


def scale_bias_output(acc: np.ndarray, scale, bias=None) -> np.ndarray:
    """MatMulIntegerToFloat's output: ``f32(f32(float(acc) * scale) + bias)``."""
    acc = np.ascontiguousarray(acc, dtype=np.int32)
    b = None if bias is None else _f32(bias).reshape(-1)
    return _core.mlas_scale_bias_output(acc=acc, scale=_f32(scale).reshape(-1), bias=b)


def output_scales(x_scale, w_scale, y_scale) -> np.ndarray:
    """QLinearConv's ComputeOutputScale: ``f32(f32(x_scale * w_scale[o]) / y_scale)``."""
    xs = np.float32(x_scale)
    ws = _f32(w_scale).reshape(-1)
    return (xs * ws) / np.float32(y_scale)
