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
from .kernel_names import checked_kernel, is_amx_build


def prepare(fn: str, M: int, K: int, a_s: float, a_zp: int, wt: Any, b: Optional[np.ndarray], out_s: float,
            out_zp: int, relu: bool, isa: str, onednn_kernel: Optional[str]) -> Any:
    """oneDNN's matmul as one prepared oneDNN 1x1 conv2d over (M, 1, 1, K) inputs (M >= 1; same exact
    int32 sum, the same compensation, epilogue and scale order), with the weight scale's reciprocal
    round trip; run it with ``_core.conv2d_run``."""
    require_symmetric(fn, wt, "linear")
    cls = resolve_class(isa)
    if cls not in ("vnni", "amx"):
        raise OneDNNNotSupportedError(
            f"{fn}: torch's oneDNN runs this linear with its {cls} matmul kernels ({describe_class(cls)}), whose "
            f"arithmetic qref has not reproduced (the vnni class's brg_matmul is, and the amx class's named builds)")
    onednn_kernel = checked_kernel(fn, onednn_kernel, "matmul", cls)
    amx = False
    if cls == "amx":
        # oneDNN picks an AMX matmul build (float zero-point compensation, one combined scale) or its
        # AVX-512 VNNI build (the vnni class's arithmetic) per shape and thread count: follow the name
        if not onednn_kernel:
            raise OneDNNNotSupportedError(
                f"{fn}: on the amx class oneDNN runs a linear on an AMX matmul build or on its AVX-512 VNNI build, "
                f"picked per shape and thread count, and they round apart; pass onednn_kernel= (oneDNN's verbose "
                f"log names it; from_torch params and qref.check read it)")
        amx = is_amx_build(onednn_kernel)
    O = wt.oihw.shape[0]
    # PyTorch hands oneDNN 1/w_scale and ideep inverts it (like the src and dst scales): the core's
    # weight_scale_reciprocal
    ws = np.broadcast_to(wt.scale, (O,)).astype(np.float64)
    plan = OnednnPlan(cls, onednn_kernel or "brg_matmul:avx512_core_vnni", False, amx, amx, True,
                      weight_scale_reciprocal=True)
    return prepare_conv2d((M, 1, 1, K), wt.oihw.reshape(O, 1, 1, K), b, (1, 1), (0, 0), (1, 1), 1, a_s, a_zp,
                          np.ascontiguousarray(ws), True, out_s, out_zp, relu, plan)


def run(fn: str, a2: np.ndarray, a_s: float, a_zp: int, wt: Any, b: Optional[np.ndarray], out_s: float,
        out_zp: int, relu: bool, isa: str, threads: Optional[int], return_intermediates: bool,
        onednn_kernel: Optional[str], prepared: Any = None) -> np.ndarray:
    """The (M, O) output; ``prepared``: a ``prepare``d matmul of these operands (the layer's cache)."""
    if return_intermediates:
        raise ValueError(f"{fn}: return_intermediates=True is not available for engine='onednn' (use "
                         f"engine='fbgemm')")
    M, K = a2.shape
    O = wt.oihw.shape[0]
    if prepared is None:
        prepared = prepare(fn, max(M, 1), K, a_s, a_zp, wt, b, out_s, out_zp, relu, isa, onednn_kernel)
    if M == 0:
        return np.zeros((0, O), np.uint8)
    return _core.conv2d_run(prepared, np.ascontiguousarray(a2.reshape(M, 1, 1, K)),
                            _core.default_threads() if threads is None else threads).reshape(M, O)
