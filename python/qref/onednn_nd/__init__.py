"""``qref.onednn_nd``: the documented names of oneDNN's Conv3d / transposed-conv arithmetic
(docs/onednn.md). A façade: the code lives in qref.engines.onednn.nd."""

from ..engines.onednn.nd import (
    compensated,
    integer_sums,
    plan_nd,
    requantize,
    run,
)

__all__ = ["compensated", "integer_sums", "plan_nd", "requantize", "run"]
