"""qref.onnx: ONNX Runtime's int8 models, bit for bit (CPU execution provider, default options).

- ``check(model, feeds)``: every int8 node of the graph the session actually runs, recomputed by
  qref from the inputs ORT computed for it and compared with ``==``; then the whole model
  (``run``) against ``session.run``.
- ``run(model, feeds)``: a list equal to ``InferenceSession(model).run(None, feeds)``, every int8
  node computed by qref; the float nodes (Conv on dequantized values, ReduceMean, Sigmoid ...)
  are run by ORT itself, one node at a time.
- ``explain(model, feeds, output, index)``: one output element of a QLinearConv / QGemm /
  QLinearMatMul node, step by step.
- ``ort_layer_outputs(...)``: what ORT gives for a conv or linear layer's integer parameters on
  an AVX2 host and on a VNNI host (the cross-runtime report).

onnx and onnxruntime are imported when these are called (the ``onnx`` extra). See
docs/onnxruntime.md.
"""

from ._api import (
    NodeResult,
    OnnxReport,
    check,
    explain,
    ort_host,
    run,
)
from ._graph import is_onnx_model
from .report import ort_bias_int32, ort_layer_outputs

__all__ = [
    "NodeResult",
    "OnnxReport",
    "check",
    "explain",
    "is_onnx_model",
    "ort_bias_int32",
    "ort_host",
    "ort_layer_outputs",
    "run",
]
