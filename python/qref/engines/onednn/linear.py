"""oneDNN's quantized linear (torch's "onednn" engine): its matmul (brg_matmul on the vnni class)
computes like oneDNN's conv except that the weight scale goes through PyTorch's reciprocal round
trip too (see qref.layers.linear)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ... import _core
from ...common.errors import OneDNNNotSupportedError
from ...common.onednn_isa import describe_class, resolve_class
from ...routing import require_symmetric
from .conv2d import OnednnPlan, prepare_conv2d
from .kernel_names import checked_kernel


def run(fn: str, a2: np.ndarray, a_s: float, a_zp: int, wt: Any, b: Optional[np.ndarray], out_s: float,
                   out_zp: int, relu: bool, isa: str, threads: Optional[int], return_intermediates: bool,
                   onednn_kernel: Optional[str]) -> np.ndarray:
    """oneDNN's matmul as one prepared oneDNN 1x1 conv2d over (M, 1, 1, K) (same exact int32 sum,
    the same compensation, epilogue and scale order), with the weight scale's reciprocal round trip."""
    if return_intermediates:
        raise ValueError(f"{fn}: return_intermediates=True is not available for engine='onednn' (use "
                         f"engine='fbgemm')")
    require_symmetric(fn, wt, "linear")
    cls = resolve_class(isa)
    if cls != "vnni":
        raise OneDNNNotSupportedError(
            f"{fn}: torch's oneDNN runs this linear with its {cls} matmul kernels ({describe_class(cls)}), whose "
            f"arithmetic qref has not reproduced (the vnni class, brg_matmul, is)")
    onednn_kernel = checked_kernel(fn, onednn_kernel, "matmul", "vnni")
    M, K = a2.shape
    O = wt.oihw.shape[0]
    if M == 0:
        return np.zeros((0, O), np.uint8)
    # PyTorch hands oneDNN 1/w_scale and ideep inverts it (like the src and dst scales): the core's
    # weight_scale_reciprocal
    ws = np.broadcast_to(wt.scale, (O,)).astype(np.float64)
    plan = OnednnPlan(cls, onednn_kernel or "brg_matmul:avx512_core_vnni", False, False, False, True,
                      weight_scale_reciprocal=True)
    prep = prepare_conv2d((M, 1, 1, K), wt.oihw.reshape(O, 1, 1, K), b, (1, 1), (0, 0), (1, 1), 1, a_s, a_zp,
                          np.ascontiguousarray(ws), True, out_s, out_zp, relu, plan)
    return _core.conv2d_run(prep, np.ascontiguousarray(a2.reshape(M, 1, 1, K)),
                            _core.default_threads() if threads is None else threads).reshape(M, O)
