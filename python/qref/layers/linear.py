"""qref.linear: torch's fbgemm quantized linear (``quantized::linear(_relu)``), bit for bit.

fbgemm runs a quantized linear as a GEMM whose A rows are the input rows and whose K
index is the input feature (pytorch ``qlinear.cpp`` ``PackedLinearWeight::apply_impl``:
``PackAWithRowOffset`` + ``PackBMatrix`` + ``ReQuantizeOutput``; docs/numerics.md §8). That is
exactly fbgemm's pointwise conv on (M, K, 1, 1) with a (O, K, 1, 1) weight: the same K
order, the same int16 pair saturation of the GEMM micro-kernel (features 2i, 2i+1 when
the GEMM ISA lacks VNNI), the same requantization (per-tensor bias times a reciprocal,
per-channel bias divided). So qref runs it through the conv2d core (every kernel,
including the fast ones), with the leading dimensions flattened as torch does.

Linear runs fbgemm under the "fbgemm" and the "x86" engine alike
(``qlinear_prepack.cpp`` ``QLinearPackWeightInt8::run``); only the "onednn" engine packs it
for oneDNN, whose matmul (brg_matmul on the vnni class) computes like oneDNN's conv
(qref.engines.onednn.conv2d) except that the weight scale goes through PyTorch's reciprocal round trip
too: ws = f32(1 / f32(1 / (double)w_scale)) (measured: 0 mismatches over 330k tie-rich outputs,
per-tensor and per-channel; the conv's plain f32(w_scale) gives 164 on the per-channel ones;
tests/test_linear.py).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..common.layout import _wrap_quint8
from ..common.operands import _activation, _bias_operand, _output_quant, _weight_operand
from ..common.validate import MAX_ELEMENTS, check_bool
from ..engines.fbgemm import linear as fbgemm_linear
from ..engines.fbgemm.conv2d import Intermediates
from ..engines.onednn import linear as onednn_linear
from ..engines.qnnpack import ops as qnnpack_ops
from ..routing import _no_onednn_kernel, _run_args, fbgemm_isa, linear_runs_onednn
from .prep_cache import ONESHOT


def linear(
    input: Any,
    weight: Any,
    bias: Any = None,
    *,
    input_scale: Any = None,
    input_zero_point: Any = None,
    weight_scale: Any = None,
    weight_zero_point: Any = None,
    output_scale: Any,
    output_zero_point: Any,
    relu: bool = False,
    engine: str = "fbgemm",
    isa: str = "auto",
    kernel: str = "auto",
    threads: Optional[int] = None,
    return_intermediates: bool = False,
    onednn_kernel: Optional[str] = None,
) -> Any:
    """Quantized linear, bit-exact with torch's fbgemm ``quantized::linear(_relu)``.

    ``input``: quint8 tensor (..., K) or uint8 array with ``input_scale``/``input_zero_point``.
    ``weight``: qint8 tensor (O, K), per-tensor or per-channel (axis 0), or an int8 array with
    ``weight_scale``/``weight_zero_point``. ``bias``: float32 (O,) or None.
    ``engine``: "fbgemm" or "x86" (both run fbgemm for linear), or "onednn" (oneDNN's matmul: see
    the module doc; needs symmetric weights, verified on the vnni class), or "qnnpack" (torch's QNNPACK). ``onednn_kernel``: the
    oneDNN implementation torch ran (qref.check reads it), refused unless qref reproduces it.
    Returns the same kind as ``input``, shape (..., O). With ``return_intermediates=True``
    returns ``(output, Intermediates)`` whose arrays have shape (..., O).
    """
    fn = "linear"
    # torch's quantized linear takes any leading dimensions (..., K)
    a, a_s, a_zp, from_torch = _activation(fn, input, input_scale, input_zero_point, 2, "(..., K)", at_least=True)
    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point, 2)
    O, K = wt.oihw.shape
    if a.shape[-1] != K:
        raise ValueError(f"{fn}: input has {a.shape[-1]} features (last dimension) but weight has {K} "
                         f"(in_features must match)")
    if O == 0 or K == 0:
        raise ValueError(f"{fn}: weight has shape {(O, K)}; both dimensions must be >= 1")
    lead = a.shape[:-1]
    M = int(np.prod(lead, dtype=np.int64)) if lead else 1
    if M * O > MAX_ELEMENTS or M * K > MAX_ELEMENTS:
        raise ValueError(f"{fn}: sizes too large ({M} rows x {O} outputs; at most 2^40 elements)")
    if wt.per_channel and wt.scale.shape[0] != O:
        raise ValueError(f"{fn}: weight has {wt.scale.shape[0]} per-channel scales but {O} output features")
    b = _bias_operand(fn, bias, O)
    out_s, out_zp = _output_quant(fn, output_scale, output_zero_point)
    check_bool(fn, "relu", relu)
    qnnpack = engine == "qnnpack"  # torch's QNNPACK: one SSE2 path on every x86 CPU
    kname, nthreads = _run_args(fn, return_intermediates, "fbgemm" if qnnpack else engine, isa, kernel, threads)
    if qnnpack:
        if onednn_kernel:
            raise ValueError(f"{fn}: onednn_kernel={onednn_kernel!r} with engine='qnnpack' (it names a oneDNN kernel)")
        res = qnnpack_ops.linear(a.reshape(M, K), a_s, a_zp, wt, b, out_s, out_zp, bool(relu),
                                 bool(return_intermediates))
        out = res[0] if return_intermediates else res
        result = qnnpack_ops.wrap_linear(out, lead, from_torch, out_s, out_zp)
        if return_intermediates:
            shape = tuple(lead) + (O,)
            return result, qnnpack_ops.QnnpackIntermediates(res[1].reshape(shape), res[2].reshape(shape),
                                                            np.zeros(0, np.int32), np.zeros(0, np.float32))
        return result
    # The weights packed once per (weight-side arguments, M, quantization, engine, ...): the
    # checked cache of qref.layers.prep_cache, which never returns a stale entry.
    objs = (weight, bias, weight_scale, weight_zero_point)
    key = None if return_intermediates else ONESHOT.key(objs, (fn, M, K, a_s, a_zp, out_s, out_zp, bool(relu), engine,
                                                               isa, kname, repr(onednn_kernel)))
    prep = ONESHOT.get(key, objs)
    if linear_runs_onednn(engine):
        # qlinear_prepack.cpp: only the "onednn" engine packs linear weights for oneDNN; "x86" and
        # "fbgemm" both use fbgemm's PackedLinearWeight.
        if prep is None and key is not None:
            prep = onednn_linear.prepare(fn, max(M, 1), K, a_s, a_zp, wt, b, out_s, out_zp, bool(relu), isa,
                                         onednn_kernel)
            ONESHOT.put(key, objs, prep)
        out = onednn_linear.run(fn, a.reshape(M, K), a_s, a_zp, wt, b, out_s, out_zp, bool(relu), isa, nthreads,
                                return_intermediates, onednn_kernel, prep)
        return _wrap_quint8(out.reshape(tuple(lead) + (O,)), from_torch, out_s, out_zp)
    _no_onednn_kernel(fn, onednn_kernel, engine)
    if engine == "x86":
        isa = fbgemm_isa(isa)
    plan = fbgemm_linear.linear_plan(isa)

    out_shape = tuple(lead) + (O,)
    if M == 0:
        out = np.zeros(out_shape, np.uint8)
        res = None
    elif key is not None:
        if prep is None:
            prep = fbgemm_linear.prepare(M, K, a_s, a_zp, wt, b, out_s, out_zp, bool(relu), plan, kname)
            ONESHOT.put(key, objs, prep)
        out = fbgemm_linear.run_prepared(prep, a.reshape(M, K), nthreads).reshape(out_shape)
    else:
        res = fbgemm_linear.run(a.reshape(M, K), a_s, a_zp, wt, b, out_s, out_zp, bool(relu), plan, kname, nthreads,
                                bool(return_intermediates))
        out = (res[0] if return_intermediates else res).reshape(out_shape)
    result = _wrap_quint8(out, from_torch, out_s, out_zp)
    if return_intermediates:
        if res is None:
            z32 = np.zeros(out_shape, np.int32)
            return result, Intermediates(z32, z32.copy(), np.zeros(out_shape, np.float32), plan)
        return result, Intermediates(res[1].reshape(out_shape), res[2].reshape(out_shape), res[3].reshape(out_shape),
                                     plan)
    return result
