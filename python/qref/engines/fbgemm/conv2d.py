"""fbgemm's quantized conv2d: the path fbgemm takes and whether it saturates (``ConvPlan``), and
the runs of the C++ core on validated operands (qref.common.operands ``_Act`` / ``_Weight``).

fbgemm's paths (docs/numerics.md §3, §4): depthwise, groupwise, pointwise, im2col; the core's
``conv_path`` makes the same choice as fbgemm for the shape and ISA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ... import _core
from ...common.isa import IsaSemantics, isa_semantics
from ...common.layout import _channels_last, _wrap_output
from ...common.validate import check_plan_args


@dataclass(frozen=True)
class ConvPlan:
    """How fbgemm computes a conv on the named ISA: the path and its saturation."""

    path: str
    saturates: bool
    isa: IsaSemantics

    def __str__(self) -> str:
        sat = "int16-saturating pairs (vpmaddubsw)" if self.saturates else "exact int32 products"
        return f"fbgemm {self.path} path, {sat}, isa {self.isa.name}"


def conv_plan(input_shape_nchw, weight_shape_oihw, stride, padding, dilation, groups, isa: str = "auto") -> ConvPlan:
    shapes = check_plan_args("conv_plan", input_shape_nchw, weight_shape_oihw, stride, padding, dilation, groups, 2,
                             isa=isa)
    return _conv_plan(*shapes, isa)


def _conv_plan(input_shape_nchw, weight_shape_oihw, stride, padding, dilation, groups, isa: str) -> ConvPlan:
    """conv_plan of arguments already checked (conv2d's own)."""
    N, C, H, W = (int(v) for v in input_shape_nchw)
    O, Cg, KH, KW = (int(v) for v in weight_shape_oihw)
    sem = isa_semantics(isa)
    path = _core.conv_path([N, H, W, C], [O, KH, KW, Cg], tuple(stride), tuple(padding), tuple(dilation),
                           int(groups), sem.avx512_host)
    sat = {"depthwise": True, "groupwise": sem.groupwise_saturates}.get(path, sem.gemm_saturates)
    return ConvPlan(path, sat, sem)


@dataclass(frozen=True, eq=False)
class Intermediates:
    """Stage-by-stage values of every output element, (N, O, OH, OW) like the output."""

    acc: np.ndarray  # int32 sum of products (saturated pairs where fbgemm saturates)
    raw: np.ndarray  # int32 after the zero-point terms
    y: np.ndarray  # float32 pre-rounding value
    plan: ConvPlan


def prepare(act: Any, wt: Any, b: Optional[np.ndarray], st: tuple, pd: tuple, dl: tuple, g: int, out_s: float,
            out_zp: int, relu: bool, plan: ConvPlan, kname: str) -> Any:
    """The weights transposed, column-summed and packed once for act's shape and quantization:
    run it with ``_core.conv2d_run(prepared, x_nhwc, threads)``."""
    return _core.conv2d_prepare(
        act.nhwc, _channels_last(wt.oihw), b, st, pd, dl, g, act.scale,
        act.zero_point, wt.scale, wt.zero_point, wt.per_channel, out_s, out_zp, bool(relu), plan.saturates,
        kname)


def run(act: Any, wt: Any, b: Optional[np.ndarray], st: tuple, pd: tuple, dl: tuple, g: int, out_s: float,
        out_zp: int, relu: bool, plan: ConvPlan, kname: str, nthreads: Optional[int],
        return_intermediates: bool) -> Any:
    """One conv2d call: the caller's kind of output (N, O, OH, OW), with ``return_intermediates``
    ``(output, Intermediates)``."""
    w_ohwi = _channels_last(wt.oihw)
    res = _core.conv2d_nhwc(
        act.nhwc, w_ohwi, b, st, pd, dl, g, act.scale, act.zero_point, wt.scale, wt.zero_point, wt.per_channel,
        out_s, out_zp, bool(relu), plan.saturates, kname,
        _core.default_threads() if nthreads is None else nthreads, bool(return_intermediates),
    )
    out_nhwc = res[0] if return_intermediates else res
    out = _wrap_output(out_nhwc, act.from_torch, out_s, out_zp)
    if return_intermediates:
        def nchw(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

        return out, Intermediates(nchw(res[1]), nchw(res[2]), nchw(res[3]), plan)
    return out
