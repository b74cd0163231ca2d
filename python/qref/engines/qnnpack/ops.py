"""QNNPACK's arithmetic on validated operands (qref.common.operands), as torch 2.x runs it on x86
(one SSE2 code path on every x86 CPU, so there is no ISA choice):

- conv2d / linear: ``acc = bias_q[o] + sum (x - x_zp) * (w - w_zp)`` in int32, with the float bias
  quantized to int32 at scale ``f32(w_scale * x_scale)`` (``bias_q = nearbyint(bias * (1/scale))``),
  then ``y = f32(float(acc) * M[o])`` with ``M[o] = f32(f32(w_scale[o] * x_scale) * f32(1 / y_scale))``,
  ``out = clamp(rne(y) + y_zp, lo, 255)`` (lo = y_zp with ReLU); cvtps2dq's INT32_MIN for
  ``|y| >= 2^31`` ends as 0.
- add: integer fixed point (``qnnpack_add_params``: two multipliers below 2^22, a rounding right
  shift with ties away from zero).
- sigmoid, tanh, hardsigmoid, hardswish: a 256-entry table built in float32 with libm's expf/tanhf.

docs/qnnpack.md derives each step; tests/test_qnnpack.py checks each against torch's qnnpack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ... import _core
from ...common.layout import _wrap_output, _wrap_quint8

LUT_KINDS = {"sigmoid": 0, "tanh": 1, "hardsigmoid": 2, "hardswish": 3}


@dataclass(frozen=True)
class QnnpackIntermediates:
    """QNNPACK's stages for every output element (same shape as the output)."""

    acc: np.ndarray  # int32: quantized bias + sum of (x - x_zp) * (w - w_zp)
    y: np.ndarray  # float32: float(acc) * scale, before rounding
    bias_q: np.ndarray  # int32 (O,): the bias as QNNPACK quantized it for this input scale
    scale: np.ndarray  # float32 (O,): the requantization scale


def _per_channel(wt: Any, O: int) -> tuple:
    ws = np.ascontiguousarray(np.broadcast_to(np.asarray(wt.scale, np.float64), (O,)))
    wz = np.ascontiguousarray(np.broadcast_to(np.asarray(wt.zero_point, np.int32), (O,)))
    return ws, wz


def conv2d(x_nchw: np.ndarray, a_s: float, a_zp: int, from_torch: bool, wt: Any, bias: Optional[np.ndarray],
           stride: tuple, padding: tuple, dilation: tuple, groups: int, out_s: float, out_zp: int, relu: bool,
           return_intermediates: bool = False) -> Any:
    """QNNPACK's quantized conv2d (groups of any size: its gemm, conv and depthwise kernels compute
    the same exact accumulator). ``x_nchw``: uint8 (N, C, H, W)."""
    O = wt.oihw.shape[0]
    ws, wz = _per_channel(wt, O)
    res = _core.qnnpack_conv2d(np.ascontiguousarray(x_nchw), np.ascontiguousarray(wt.oihw), ws, wz, bias,
                               float(a_s), int(a_zp), float(out_s), int(out_zp), bool(relu), tuple(stride),
                               tuple(padding), tuple(dilation), int(groups), bool(return_intermediates))
    out = res[0] if return_intermediates else res
    # torch's qnnpack conv writes channels_last memory
    wrapped = _wrap_output(np.ascontiguousarray(out.transpose(0, 2, 3, 1)), from_torch, float(out_s), int(out_zp))
    if return_intermediates:
        return wrapped, QnnpackIntermediates(res[1], res[2], res[3], res[4])
    return wrapped


def linear(a2d: np.ndarray, a_s: float, a_zp: int, wt: Any, bias: Optional[np.ndarray], out_s: float, out_zp: int,
           relu: bool, return_intermediates: bool = False) -> Any:
    """QNNPACK's quantized linear on (M, K) rows: (out (M, O)[, acc, y])."""
    O = wt.oihw.shape[0]
    ws, wz = _per_channel(wt, O)
    return _core.qnnpack_linear(np.ascontiguousarray(a2d), np.ascontiguousarray(wt.oihw), ws, wz, bias, float(a_s),
                                int(a_zp), float(out_s), int(out_zp), bool(relu), bool(return_intermediates))


def add_params(a_scale: float, a_zp: int, b_scale: float, b_zp: int, out_s: float, out_zp: int,
               relu: bool = False) -> dict:
    """QNNPACK's add constants (ratios, multipliers, shift, zero-point product)."""
    return _core.qnnpack_add_params(a_scale, a_zp, b_scale, b_zp, out_s, out_zp, relu)


def add(fn: str, qa: Any, qb: Any, scale: float, zero_point: int, relu: bool = False) -> Any:
    """torch's ``quantized::add(_relu)`` under the qnnpack engine: two quint8 tensors of one shape,
    read in ``qa``'s memory format (qnnpack_add makes both contiguous in it)."""
    import torch

    if qa.dtype != torch.quint8 or qb.dtype != torch.quint8:
        raise TypeError(f"{fn}: operands {qa.dtype} and {qb.dtype} (QNNPACK's add takes quint8 only)")
    if tuple(qa.shape) != tuple(qb.shape):
        raise ValueError(f"{fn}: shapes {tuple(qa.shape)} and {tuple(qb.shape)} differ (QNNPACK's add does not "
                         f"broadcast)")
    ratios = (float(np.float32(qa.q_scale()) / np.float32(scale)), float(np.float32(qb.q_scale()) / np.float32(scale)))
    if not all(2.0 ** -14 <= r < 2.0 ** 8 for r in ratios):
        raise ValueError(f"{fn}: input/output scale ratios {ratios[0]:.7g}, {ratios[1]:.7g} (QNNPACK's add needs "
                         f"each in [2**-14, 2**8); torch raises here too)")
    fmt = torch.channels_last if (qa.dim() == 4 and qa.is_contiguous(memory_format=torch.channels_last)
                                  and not qa.is_contiguous()) else torch.contiguous_format
    a = qa.contiguous(memory_format=fmt)
    b = qb.contiguous(memory_format=fmt)
    ra = a.int_repr().contiguous(memory_format=fmt)
    rb = b.int_repr().contiguous(memory_format=fmt)
    flat_a = _mem_bytes(ra)
    flat_b = _mem_bytes(rb)
    out = _core.qnnpack_add(flat_a, flat_b, qa.q_scale(), qa.q_zero_point(), qb.q_scale(), qb.q_zero_point(),
                            float(scale), int(zero_point), bool(relu))
    return _from_mem(out, ra, float(scale), int(zero_point))


def _mem_bytes(t: Any) -> np.ndarray:
    """A dense uint8 tensor's bytes in memory order."""
    import torch

    if t.dim() == 4 and not t.is_contiguous():
        return np.ascontiguousarray(t.permute(0, 2, 3, 1).numpy()).reshape(-1)
    return np.ascontiguousarray(t.contiguous().numpy()).reshape(-1) if isinstance(t, torch.Tensor) else t


def _from_mem(flat: np.ndarray, like: Any, scale: float, zero_point: int) -> Any:
    import torch

    if like.dim() == 4 and not like.is_contiguous():
        n, c, h, w = like.shape
        r = torch.from_numpy(flat.reshape(n, h, w, c)).permute(0, 3, 1, 2)
    else:
        r = torch.from_numpy(flat.reshape(tuple(like.shape)))
    return torch._make_per_tensor_quantized_tensor(r, scale, zero_point)


def lut_table(kind: str, input_scale: float, input_zero_point: int, output_scale: float,
              output_zero_point: int) -> np.ndarray:
    """QNNPACK's 256-entry table for ``kind`` ("sigmoid", "tanh", "hardsigmoid", "hardswish")."""
    return _core.qnnpack_lut(LUT_KINDS[kind], float(input_scale), int(input_zero_point), float(output_scale),
                             int(output_zero_point))


def lut_op(kind: str, qx: Any, output_scale: float, output_zero_point: int) -> Any:
    """A lookup-table op on a quint8 tensor (or a uint8 array): every byte through the table,
    the tensor's layout kept."""
    import torch

    table = lut_table(kind, qx.q_scale(), qx.q_zero_point(), output_scale, output_zero_point)
    fmt = torch.channels_last if (qx.dim() == 4 and not qx.is_contiguous()
                                  and qx.is_contiguous(memory_format=torch.channels_last)) else torch.contiguous_format
    raw = qx.int_repr().contiguous(memory_format=fmt)
    out = _core.qnnpack_lut_apply(_mem_bytes(raw), table)
    return _from_mem(out, raw, float(output_scale), int(output_zero_point))


def wrap_linear(out: np.ndarray, lead: tuple, from_torch: bool, out_s: float, out_zp: int) -> Any:
    return _wrap_quint8(out.reshape(tuple(lead) + (out.shape[-1],)), from_torch, out_s, out_zp)
