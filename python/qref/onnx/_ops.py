"""ONNX / com.microsoft int8 nodes computed with qref's MLAS engine.

``OPS[(domain, op_type)](node_attrs, inputs, host)`` returns the node's outputs. A node whose
tensors are not 8-bit (e.g. a float MaxPool) raises ``NotInt8``; qref.onnx then lets ORT run it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..engines import mlas

Q8 = (np.uint8, np.int8)


class NotInt8(Exception):
    """The node is not an int8 computation (qref lets ORT run it)."""


class UnsupportedNode(Exception):
    """An int8 node in a form qref does not reproduce yet (reported, never guessed)."""


def _is_q8(a) -> bool:
    return a is not None and a.dtype in Q8


def _opt(inputs: Sequence, i: int):
    return inputs[i] if i < len(inputs) else None


def _scalar_zp(z, dtype) -> int:
    if z is None:
        return 0
    z = np.asarray(z).reshape(-1)
    return int(z[0])


def _conv_pads(at: Dict[str, Any], spatial_in: Sequence[int], kernel: Sequence[int], strides, dilations):
    nd = len(kernel)
    auto_pad = at.get("auto_pad", "NOTSET")
    pads = list(at.get("pads", [0] * (2 * nd)))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            out = -(-spatial_in[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial_in[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    return pads


def _to_nhwc_2d(x: np.ndarray, channels_last: bool) -> Tuple[np.ndarray, int]:
    """x as (N, H, W, C) plus its spatial rank (1 or 2)."""
    if x.ndim == 3:  # 1-D conv: (N, C, L) or (N, L, C)
        x4 = x[:, :, None, :] if not channels_last else x[:, None, :, :]
        rank = 1
    elif x.ndim == 4:
        x4 = x
        rank = 2
    else:
        raise UnsupportedNode(f"convolution over {x.ndim - 2} spatial dimensions (qref does 1-D and 2-D)")
    if not channels_last:
        x4 = np.transpose(x4, (0, 2, 3, 1))
    return np.ascontiguousarray(x4), rank


def conv_accumulators(x, x_zp, w, w_zp, at: Dict[str, Any], host: str, channels_last: bool = False):
    """int32 accumulators of QLinearConv / ConvInteger as (N, OH, OW, M) and the spatial rank."""
    x4, rank = _to_nhwc_2d(x, channels_last)
    w4 = w[:, :, None, :] if w.ndim == 3 else w
    if w4.ndim != 4:
        raise UnsupportedNode(f"weight of rank {w.ndim}")
    kernel = list(at.get("kernel_shape", w.shape[2:]))
    strides = list(at.get("strides", [1] * rank))
    dil = list(at.get("dilations", [1] * rank))
    spatial = list(x.shape[2:] if not channels_last else x.shape[1:-1])
    pads = _conv_pads(at, spatial, kernel, strides, dil)
    if rank == 1:
        strides, dil, pads = [1] + strides, [1] + dil, [0, pads[0], 0, pads[1]]
    acc = mlas.conv2d_int32(x4, x_zp, np.ascontiguousarray(w4), w_zp, groups=int(at.get("group", 1)),
                            strides=strides, pads=pads, dilations=dil, host=host)
    return acc, rank


def _from_nhwc(y: np.ndarray, rank: int, channels_last: bool) -> np.ndarray:
    if channels_last:
        return y[:, 0] if rank == 1 else y
    y = np.transpose(y, (0, 3, 1, 2))
    y = y[:, :, 0, :] if rank == 1 else y
    return np.ascontiguousarray(y)


def _w_zero_point(wz) -> int:
    if wz is None:
        return 0
    z = np.asarray(wz).reshape(-1)
    if np.any(z != z[0]):
        raise UnsupportedNode("per-channel weight zero points that differ (ORT refuses them too)")
    return int(z[0])


def qlinear_conv(at, inputs, host):
    x, xs, xz, w, ws, wz, ys, yz = inputs[:8]
    b = _opt(inputs, 8)
    if not (_is_q8(x) and _is_q8(w)):
        raise NotInt8()
    cl = bool(at.get("channels_last", 0))
    acc, rank = conv_accumulators(x, _scalar_zp(xz, x.dtype), w, _w_zero_point(wz), at, host, cl)
    n, oh, ow, m = acc.shape
    scales = mlas.output_scales(xs, ws, ys)
    y = mlas.requantize_output(acc.reshape(-1, m), None if b is None else b.reshape(-1), scales,
                               _scalar_zp(yz, x.dtype), x.dtype)
    return [_from_nhwc(y.reshape(n, oh, ow, m), rank, cl)]


def conv_integer(at, inputs, host):
    x, w = inputs[0], inputs[1]
    xz, wz = _opt(inputs, 2), _opt(inputs, 3)
    if not (_is_q8(x) and _is_q8(w)):
        raise NotInt8()
    if host == "avx2" and x.dtype != w.dtype:
        # conv_integer.cc multiplies the weights (GEMM operand A) by an NCHW im2col (operand B):
        # which MLAS kernel that is on AVX2 hosts, and its pairing, is not established here.
        raise UnsupportedNode("ConvInteger with mixed-sign operands on AVX2 hosts (kernel not established)")
    acc, rank = conv_accumulators(x, _scalar_zp(xz, x.dtype), w, _w_zero_point(wz), at, host, False)
    return [_from_nhwc(acc, rank, False)]


def _matmul_acc(a, az, b, bz, host):
    """(..., M, K) @ (K, N) int32 accumulators; bz scalar or per column."""
    if b.ndim != 2:
        raise UnsupportedNode(f"MatMul with a {b.ndim}-D right operand (qref does 2-D weights)")
    lead = a.shape[:-1]
    a2 = np.ascontiguousarray(a.reshape(-1, a.shape[-1]))
    bt = np.ascontiguousarray(b.T)
    zb = np.asarray(bz if bz is not None else 0).reshape(-1).astype(np.int32)
    acc = mlas.qgemm(a2, _scalar_zp(az, a.dtype), bt, zb, host=host)
    return acc, lead


def matmul_integer(at, inputs, host):
    a, b = inputs[0], inputs[1]
    az, bz = _opt(inputs, 2), _opt(inputs, 3)
    if not (_is_q8(a) and _is_q8(b)):
        raise NotInt8()
    acc, lead = _matmul_acc(a, az, b, bz, host)
    return [acc.reshape(lead + (b.shape[1],))]


def qlinear_matmul(at, inputs, host):
    a, sa, az, b, sb, bz, sy, yz = inputs[:8]
    if not (_is_q8(a) and _is_q8(b)):
        raise NotInt8()
    acc, lead = _matmul_acc(a, az, b, bz, host)
    scales = mlas.output_scales(sa, sb, sy)
    y = mlas.requantize_output(acc, None, scales, _scalar_zp(yz, a.dtype), yz.dtype if yz is not None else a.dtype)
    return [y.reshape(lead + (b.shape[1],))]


def qgemm(at, inputs, host):
    a, sa, az, b, sb, bz = inputs[:6]
    c, sy, yz = _opt(inputs, 6), _opt(inputs, 7), _opt(inputs, 8)
    if not (_is_q8(a) and _is_q8(b)):
        raise NotInt8()
    if at.get("transA", 0):
        a = a.T
    bt = b if at.get("transB", 0) else b.T
    M, N = a.shape[0], bt.shape[0]
    zb = np.asarray(bz).reshape(-1).astype(np.int32)
    acc = mlas.qgemm(np.ascontiguousarray(a), _scalar_zp(az, a.dtype), np.ascontiguousarray(bt), zb, host=host)
    if c is not None:
        acc = (acc.astype(np.int64) + np.broadcast_to(c.astype(np.int64), (M, N))).astype(np.int64)
        acc = ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)
    alpha = np.float32(at.get("alpha", 1.0))
    s = (alpha * np.float32(np.asarray(sa).reshape(-1)[0])) * np.asarray(sb, dtype=np.float32).reshape(-1)
    if sy is None:
        return [mlas.scale_bias_output(acc, s, None)]
    s = s / np.float32(np.asarray(sy).reshape(-1)[0])
    return [mlas.requantize_output(acc, None, s, _scalar_zp(yz, yz.dtype), yz.dtype)]


def quantize_linear(at, inputs, host):
    x, s = inputs[0], inputs[1]
    z = _opt(inputs, 2)
    dtype = z.dtype if z is not None else np.dtype(np.uint8)
    if dtype not in Q8 or x.dtype != np.float32:
        raise NotInt8()
    s = np.asarray(s, dtype=np.float32)
    if s.size == 1:
        return [mlas.quantize_linear(x, s.reshape(-1)[0], _scalar_zp(z, dtype), dtype)]
    axis = int(at.get("axis", 1)) % x.ndim
    out = np.empty(x.shape, dtype=dtype)
    zz = np.asarray(z).reshape(-1)
    for c in range(x.shape[axis]):
        sl = [slice(None)] * x.ndim
        sl[axis] = c
        out[tuple(sl)] = mlas.quantize_linear(np.ascontiguousarray(x[tuple(sl)]), s[c], int(zz[c]), dtype)
    return [out]


def dequantize_linear(at, inputs, host):
    x, s = inputs[0], inputs[1]
    z = _opt(inputs, 2)
    s = np.asarray(s, dtype=np.float32)
    if x.dtype in Q8:
        return [mlas.dequantize_linear(x, s, z, axis=int(at.get("axis", 1)))]
    if x.dtype == np.int32:  # int32 bias dequantization: float(x - zp) * scale
        zz = np.zeros(1, np.int32) if z is None else np.asarray(z, dtype=np.int32)
        axis = int(at.get("axis", 1)) % max(x.ndim, 1)
        shape = [1] * x.ndim
        if s.size > 1:
            shape[axis] = s.size
        d = (x.astype(np.int64) - zz.reshape(shape if zz.size > 1 else [1] * x.ndim)).astype(np.int64)
        d = ((d + 2**31) % 2**32 - 2**31).astype(np.int32)
        return [d.astype(np.float32) * s.reshape(shape if s.size > 1 else [1] * x.ndim)]
    raise NotInt8()


def dynamic_quantize_linear(at, inputs, host):
    x = inputs[0]
    s, z = mlas.dynamic_qparams(x)
    return [mlas.quantize_linear(x, s, int(z), np.uint8), np.asarray(s, dtype=np.float32),
            np.asarray(z, dtype=np.uint8)]


def _binary(op):
    def run(at, inputs, host):
        a, sa, za, b, sb, zb, sc, zc = inputs[:8]
        if not (_is_q8(a) and _is_q8(b)):
            raise NotInt8()
        return [mlas.qlinear_binary(op, a, sa, _scalar_zp(za, a.dtype), b, sb, _scalar_zp(zb, a.dtype), sc,
                                    _scalar_zp(zc, a.dtype))]

    return run


def _lookup(kind):
    def run(at, inputs, host):
        x, xs, xz, ys, yz = (list(inputs) + [None] * 5)[:5]
        if not _is_q8(x):
            raise NotInt8()
        alpha = float(np.float32(at.get("alpha", 0.01)))
        t = mlas.lookup_table(kind, xs, _scalar_zp(xz, x.dtype), ys, _scalar_zp(yz, x.dtype), x.dtype, alpha=alpha)
        return [mlas.apply_table(x, t)]

    return run


def qlinear_concat(at, inputs, host):
    ys, yz = inputs[0], inputs[1]
    parts = []
    for i in range(2, len(inputs), 3):
        x, xs, xz = inputs[i], inputs[i + 1], inputs[i + 2]
        if not _is_q8(x):
            raise NotInt8()
        same = np.float32(np.asarray(xs).reshape(-1)[0]) == np.float32(np.asarray(ys).reshape(-1)[0]) and \
            _scalar_zp(xz, x.dtype) == _scalar_zp(yz, x.dtype)
        if same:
            parts.append(x)
        else:
            t = mlas.lookup_table("identity", xs, _scalar_zp(xz, x.dtype), ys, _scalar_zp(yz, x.dtype), x.dtype)
            parts.append(mlas.apply_table(x, t))
    return [np.concatenate(parts, axis=int(at.get("axis", 0)))]


def qlinear_global_average_pool(at, inputs, host):
    x, xs, xz, ys, yz = inputs[:5]
    if not _is_q8(x):
        raise NotInt8()
    return [mlas.global_average_pool(x, xs, _scalar_zp(xz, x.dtype), ys, _scalar_zp(yz, x.dtype),
                                     channels_last=bool(at.get("channels_last", 0)))]


def _pool_geometry(at, spatial: Sequence[int]):
    kernel = list(at["kernel_shape"])
    nd = len(kernel)
    strides = list(at.get("strides", [1] * nd))
    dil = list(at.get("dilations", [1] * nd))
    pads = _conv_pads(at, spatial, kernel, strides, dil)
    ceil = bool(at.get("ceil_mode", 0))
    out = []
    for i in range(nd):
        eff = (kernel[i] - 1) * dil[i] + 1
        num = spatial[i] + pads[i] + pads[i + nd] - eff
        o = (math.ceil(num / strides[i]) if ceil else num // strides[i]) + 1
        if ceil and (o - 1) * strides[i] >= spatial[i] + pads[i]:
            o -= 1
        out.append(o)
    return kernel, strides, dil, pads, out


def qlinear_average_pool(at, inputs, host):
    x, xs, xz, ys, yz = inputs[:5]
    if not _is_q8(x):
        raise NotInt8()
    cl = bool(at.get("channels_last", 0))
    spatial = list(x.shape[1:-1] if cl else x.shape[2:])
    kernel, strides, dil, pads, out = _pool_geometry(at, spatial)
    if len(kernel) != 2:
        raise UnsupportedNode(f"QLinearAveragePool over {len(kernel)} spatial dimensions (qref does 2-D)")
    zx, zy = _scalar_zp(xz, x.dtype), _scalar_zp(yz, x.dtype)
    if list(kernel) == spatial and not any(pads):  # qlinear_pool.cc: falls back to the global pool
        return [mlas.global_average_pool(x, xs, zx, ys, zy, channels_last=cl)]
    return [mlas.average_pool2d(x, xs, zx, ys, zy, kernel=kernel, strides=strides, pads=pads, out_hw=out,
                                count_include_pad=bool(at.get("count_include_pad", 0)), channels_last=cl)]


def _max_pool(channels_last: bool):
    def run(at, inputs, host):
        x = inputs[0]
        if not _is_q8(x):
            raise NotInt8()
        if len(at.get("kernel_shape", [])) != 2:
            raise UnsupportedNode("8-bit MaxPool other than 2-D")
        if int(at.get("storage_order", 0)) != 0:
            raise UnsupportedNode("MaxPool storage_order=1")
        xc = x if channels_last else np.transpose(x, (0, 2, 3, 1))
        spatial = list(xc.shape[1:3])
        kernel, strides, dil, pads, out = _pool_geometry(at, spatial)
        lo = np.iinfo(x.dtype).min
        H, W = spatial
        xp = np.full((xc.shape[0], H + pads[0] + pads[2] + kernel[0] * dil[0] + strides[0] * out[0],
                      W + pads[1] + pads[3] + kernel[1] * dil[1] + strides[1] * out[1], xc.shape[3]),
                     lo, dtype=np.int32)
        xp[:, pads[0]:pads[0] + H, pads[1]:pads[1] + W, :] = xc
        y = np.full((xc.shape[0], out[0], out[1], xc.shape[3]), lo, dtype=np.int32)
        for kh in range(kernel[0]):
            for kw in range(kernel[1]):
                h0, w0 = kh * dil[0], kw * dil[1]
                y = np.maximum(y, xp[:, h0:h0 + strides[0] * out[0]:strides[0], w0:w0 + strides[1] * out[1]:strides[1], :])
        y = y.astype(x.dtype)
        outs = [y if channels_last else np.ascontiguousarray(np.transpose(y, (0, 3, 1, 2)))]
        return outs

    return run


def _data_movement(fn):
    def run(at, inputs, host):
        if not _is_q8(inputs[0]):
            raise NotInt8()
        return [np.ascontiguousarray(fn(at, inputs))]

    return run


def _reshape(at, inputs):
    x, shape = inputs[0], [int(v) for v in inputs[1]]
    if not at.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _flatten(at, inputs):
    x = inputs[0]
    axis = int(at.get("axis", 1)) % (x.ndim + 1) if x.ndim else 0
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _squeeze(at, inputs):
    x = inputs[0]
    axes = at.get("axes") if "axes" in at else (None if _opt(inputs, 1) is None else list(inputs[1]))
    return np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in axes))


def _unsqueeze(at, inputs):
    x = inputs[0]
    axes = at.get("axes") if "axes" in at else [int(a) for a in inputs[1]]
    out = x
    for a in sorted(int(a) % (x.ndim + len(axes)) for a in axes):
        out = np.expand_dims(out, a)
    return out


def _integer_to_float(dynamic: bool):
    """com.microsoft DynamicQuantizeMatMul (A float) / MatMulIntegerToFloat (A 8-bit)."""

    def run(at, inputs, host):
        if dynamic:
            a_f, b, sb = inputs[0], inputs[1], inputs[2]
            bz, bias = _opt(inputs, 3), _opt(inputs, 4)
            sa, za = mlas.dynamic_qparams(a_f)
            a = mlas.quantize_linear(a_f, sa, int(za), np.uint8)
        else:
            a, b, sa, sb = inputs[0], inputs[1], inputs[2], inputs[3]
            za, bz, bias = _opt(inputs, 4), _opt(inputs, 5), _opt(inputs, 6)
        if not (_is_q8(a) and _is_q8(b)):
            raise NotInt8()
        acc, lead = _matmul_acc(a, za, b, bz, host)
        s = np.float32(np.asarray(sa).reshape(-1)[0]) * np.asarray(sb, dtype=np.float32).reshape(-1)
        y = mlas.scale_bias_output(acc, s, None if bias is None else np.asarray(bias, np.float32).reshape(-1))
        return [y.reshape(lead + (b.shape[1],))]

    return run


Op = Callable[[Dict[str, Any], List[Optional[np.ndarray]], str], List[np.ndarray]]

OPS: Dict[Tuple[str, str], Op] = {
    ("", "QLinearConv"): qlinear_conv,
    ("com.microsoft", "QLinearConv"): qlinear_conv,
    ("", "ConvInteger"): conv_integer,
    ("", "MatMulInteger"): matmul_integer,
    ("", "QLinearMatMul"): qlinear_matmul,
    ("com.microsoft", "QGemm"): qgemm,
    ("", "QuantizeLinear"): quantize_linear,
    ("com.microsoft", "QuantizeLinear"): quantize_linear,
    ("", "DequantizeLinear"): dequantize_linear,
    ("com.microsoft", "DequantizeLinear"): dequantize_linear,
    ("", "DynamicQuantizeLinear"): dynamic_quantize_linear,
    ("com.microsoft", "QLinearAdd"): _binary("add"),
    ("com.microsoft", "QLinearMul"): _binary("mul"),
    ("com.microsoft", "QLinearSigmoid"): _lookup("sigmoid"),
    ("com.microsoft", "QLinearLeakyRelu"): _lookup("leaky_relu"),
    ("com.microsoft", "QLinearConcat"): qlinear_concat,
    ("com.microsoft", "QLinearGlobalAveragePool"): qlinear_global_average_pool,
    ("com.microsoft", "QLinearAveragePool"): qlinear_average_pool,
    ("", "MaxPool"): _max_pool(False),
    ("com.microsoft", "NhwcMaxPool"): _max_pool(True),
    ("com.microsoft", "DynamicQuantizeMatMul"): _integer_to_float(True),
    ("com.microsoft", "MatMulIntegerToFloat"): _integer_to_float(False),
    ("", "Transpose"): _data_movement(lambda at, i: np.transpose(i[0], at.get("perm"))),
    ("", "Reshape"): _data_movement(_reshape),
    ("", "Flatten"): _data_movement(_flatten),
    ("", "Squeeze"): _data_movement(_squeeze),
    ("", "Unsqueeze"): _data_movement(_unsqueeze),
    ("", "Identity"): _data_movement(lambda at, i: i[0]),
}

# Nodes whose arithmetic is integer or requantization (the rest of OPS only moves bytes).
ARITHMETIC = {k for k in OPS if k[1] not in ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")}
