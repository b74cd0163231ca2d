"""What ONNX Runtime gives for a conv / linear layer's integer parameters, on an AVX2 host and on
a VNNI host: the ORT column of the cross-runtime report.

Given the layer as torch holds it (uint8 activations, int8 weights, zero points, scales and a
float bias), ``ort_layer_outputs`` builds what ORT's quantizer (``quantize_static``, QOperator or
QDQ, which fuse to the same QLinearConv / QGemm kernels) would store and computes the kernels'
outputs with MLAS's arithmetic:

- bias: ``ort_bias_int32`` = ``int32(round_half_even(float64(bias) / float64(f32(x_scale *
  w_scale[o]))))``, clipped to int32 (onnxruntime/quantization/base_quantizer.py,
  ``quantize_bias_static_impl``: ``bias_scale = input_scale * weight_scale`` in float32, the
  division and ``np.round`` in float64);
- output scale: ``f32(f32(x_scale * w_scale[o]) / y_scale)`` (qlinearconv.cc ComputeOutputScale);
- accumulation: exact on VNNI hosts; on AVX2 hosts (and AVX512 without VNNI) the U8S8 kernels
  (QgemmU8S8KernelAvx2, ConvSymKernelAvx2) saturate each pair of u8*s8 products to int16 in the
  reduction order (kh, kw, c); depthwise convolutions are exact on both;
- requantization: MlasRequantizeOutput (float multiply, clamp in float, round half to even, + zp).

Only the host this process runs on can be checked against ORT here; the other column is computed
from the formula (``from_formula`` names it).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..engines import mlas
from ._api import ort_host


def ort_bias_int32(bias: Optional[Any], x_scale: float, w_scale: Any, out_channels: int) -> np.ndarray:
    """The int32 bias ORT's quantizer writes for a float bias (see the module docstring)."""
    if bias is None:
        return np.zeros(out_channels, dtype=np.int32)
    b = np.asarray(bias, dtype=np.float32).reshape(-1)
    if b.size != out_channels:
        raise ValueError(f"bias has {b.size} values, expected one per output channel ({out_channels})")
    ws = np.asarray(w_scale, dtype=np.float32).reshape(-1)
    bs = np.float32(x_scale) * ws
    q = np.round(b.astype(np.float64) / bs.astype(np.float64))
    lo, hi = np.float64(np.iinfo(np.int32).min), np.float64(np.iinfo(np.int32).max)
    return np.clip(q, lo, hi).astype(np.int32)


def ort_layer_outputs(x_u8: np.ndarray, w_i8: np.ndarray, bias: Optional[Any], *, x_scale: float,
                      x_zero_point: int, w_scale: Any, w_zero_point: Any = 0, y_scale: float,
                      y_zero_point: int, kind: str = "conv", groups: int = 1,
                      strides: Sequence[int] = (1, 1), pads: Sequence[int] = (0, 0, 0, 0),
                      dilations: Sequence[int] = (1, 1)) -> Dict[str, Any]:
    """ORT's uint8 outputs for one layer on both host kinds.

    ``kind="conv"``: x (N, C, H, W), w (O, C/groups, KH, KW), NCHW output (QLinearConv).
    ``kind="linear"``: x (M, K), w (O, K), output (M, O) (QGemm with transB=1, as the quantizer
    writes a Gemm/Linear). ``pads`` in ONNX order (top, left, bottom, right).
    Returns ``{"avx2": array, "vnni": array, "bias_int32": array, "this_host": "vnni"|"avx2",
    "from_formula": [the host kinds not run here]}``.
    """
    x = np.ascontiguousarray(x_u8)
    w = np.ascontiguousarray(w_i8)
    if x.dtype != np.uint8:
        raise TypeError(f"x_u8 must be a uint8 array, got {x.dtype}")
    if w.dtype != np.int8:
        raise TypeError(f"w_i8 must be an int8 array, got {w.dtype}")
    O = w.shape[0]
    ws = np.asarray(w_scale, dtype=np.float32).reshape(-1)
    if ws.size not in (1, O):
        raise ValueError(f"w_scale has {ws.size} values, expected 1 or {O}")
    wz = np.asarray(w_zero_point).reshape(-1)
    if np.any(wz != wz[0]):
        raise ValueError("w_zero_point: ORT's QLinearConv requires one weight zero point for all channels")
    b32 = ort_bias_int32(bias, x_scale, ws if ws.size == O else np.repeat(ws, O), O)
    scales = mlas.output_scales(x_scale, ws, y_scale)
    out: Dict[str, Any] = {"bias_int32": b32}
    for host in mlas.HOSTS:
        if kind == "conv":
            acc = mlas.conv2d_int32(np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))), int(x_zero_point), w,
                                    int(wz[0]), groups=groups, strides=strides, pads=pads, dilations=dilations,
                                    host=host)
            n, oh, ow, m = acc.shape
            y = mlas.requantize_output(acc.reshape(-1, m), b32, scales, int(y_zero_point))
            out[host] = np.ascontiguousarray(np.transpose(y.reshape(n, oh, ow, m), (0, 3, 1, 2)))
        elif kind == "linear":
            acc = mlas.qgemm(x, int(x_zero_point), w, np.asarray([wz[0]], np.int32), host=host)
            out[host] = mlas.requantize_output(acc, b32, scales, int(y_zero_point))
        else:
            raise ValueError(f"kind={kind!r}: must be 'conv' or 'linear'")
    here = ort_host("auto")
    out["this_host"] = here
    out["from_formula"] = [h for h in mlas.HOSTS if h != here]
    return out
