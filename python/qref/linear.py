"""qref.linear: torch's fbgemm quantized linear (``quantized::linear(_relu)``), bit for bit.

fbgemm runs a quantized linear as a GEMM whose A rows are the input rows and whose K
index is the input feature (pytorch ``qlinear.cpp`` ``PackedLinearWeight::apply_impl``:
``PackAWithRowOffset`` + ``PackBMatrix`` + ``ReQuantizeOutput``; SPEC.md §8). That is
exactly fbgemm's pointwise conv on (M, K, 1, 1) with a (O, K, 1, 1) weight: the same K
order, the same int16 pair saturation of the GEMM micro-kernel (features 2i, 2i+1 when
the GEMM ISA lacks VNNI), the same requantization (per-tensor bias times a reciprocal,
per-channel bias divided). So qref runs it through the conv2d core (every kernel,
including the fast ones), with the leading dimensions flattened as torch does.

Linear always runs fbgemm, under the "fbgemm" and the "x86" engine alike
(``qlinear_prepack.cpp`` ``QLinearPackWeightInt8::run``), so there is no oneDNN routing here.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _core
from ._isa import isa_semantics
from ._validate import (
    MAX_ELEMENTS,
    check_bool,
)
from .conv import (
    ConvPlan,
    Intermediates,
    OneDNNNotSupportedError,
    _activation,
    _bias_operand,
    _output_quant,
    _run_args,
    _weight_operand,
)


def linear_plan(isa: str = "auto") -> ConvPlan:
    """fbgemm's linear is a GEMM: it saturates int16 pairs iff the GEMM ISA lacks VNNI."""
    sem = isa_semantics(isa)
    return ConvPlan("linear (GEMM)", sem.gemm_saturates, sem)


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
) -> Any:
    """Quantized linear, bit-exact with torch's fbgemm ``quantized::linear(_relu)``.

    ``input``: quint8 tensor (..., K) or uint8 array with ``input_scale``/``input_zero_point``.
    ``weight``: qint8 tensor (O, K), per-tensor or per-channel (axis 0), or an int8 array with
    ``weight_scale``/``weight_zero_point``. ``bias``: float32 (O,) or None.
    ``engine``: "fbgemm" or "x86" (both run fbgemm for linear); "onednn" raises
    ``OneDNNNotSupportedError``.
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
    kname, nthreads = _run_args(fn, return_intermediates, engine, isa, kernel, threads)
    if engine == "onednn":
        # qlinear_prepack.cpp: only the "onednn" engine packs linear weights for oneDNN; "x86" and
        # "fbgemm" both use fbgemm's PackedLinearWeight.
        raise OneDNNNotSupportedError(
            f"{fn}: engine='onednn' runs this linear on oneDNN, whose arithmetic qref does not reproduce yet; "
            f"engine='fbgemm' and engine='x86' both run fbgemm for linear")
    plan = linear_plan(isa)

    out_shape = tuple(lead) + (O,)
    if M == 0:
        out = np.zeros(out_shape, np.uint8)
        res = None
    else:
        # (M, K) rows as an NHWC image (M, 1, 1, K); weight (O, K) as OHWI (O, 1, 1, K): fbgemm's
        # pointwise conv and its linear are the same GEMM (SPEC.md §4.1, §8).
        x4 = a.reshape(M, 1, 1, K)
        w4 = np.ascontiguousarray(wt.oihw.reshape(O, 1, 1, K))
        res = _core.conv2d_nhwc(
            x4, w4, b, (1, 1), (0, 0), (1, 1), 1, a_s, a_zp, wt.scale, wt.zero_point, wt.per_channel,
            out_s, out_zp, bool(relu), plan.saturates, kname,
            _core.default_threads() if nthreads is None else nthreads, bool(return_intermediates),
        )
        out = (res[0] if return_intermediates else res).reshape(out_shape)
    if from_torch:
        import torch

        result = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(out)), out_s, out_zp)
    else:
        result = out
    if return_intermediates:
        if res is None:
            z32 = np.zeros(out_shape, np.int32)
            return result, Intermediates(z32, z32.copy(), np.zeros(out_shape, np.float32), plan)
        return result, Intermediates(res[1].reshape(out_shape), res[2].reshape(out_shape), res[3].reshape(out_shape),
                                     plan)
    return result
