"""``qref.onednn_nd``: the documented names of oneDNN's Conv3d / transposed-conv arithmetic
(docs/onednn.md). A façade: the code lives in qref.engines.onednn.nd (the arithmetic itself in the
core, csrc/qref/onednn/)."""

from ..engines.onednn.nd import plan_nd, run

__all__ = ["plan_nd", "run"]
