"""The graph ONNX Runtime actually runs, its intermediate values, and single-node ORT runs.

``optimized_model(model)`` builds an ``InferenceSession`` with default ``SessionOptions`` (CPU
execution provider, ``ORT_ENABLE_ALL``) and ``optimized_model_filepath`` set, and reads back the
graph it saved: QDQ groups fused into QLinear kernels, NHWC layout transforms, the x86
``QDQS8ToU8`` rewrite. ``intermediate_values`` exposes every node output of that graph as a
graph output and runs it with optimizations off, so each node runs on exactly the values ORT
computed for it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, List, Sequence

import numpy as np


def _onnx():
    import onnx

    return onnx


def _ort():
    import onnxruntime

    return onnxruntime


def load_model(model: Any):
    """A ``ModelProto`` from a ModelProto, a path (str or PathLike) or serialized bytes."""
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ValueError(f"model={path!r}: no such file")
        return onnx.load(path)
    raise TypeError(f"model must be an onnx.ModelProto, a path to a .onnx file or bytes, got {type(model).__name__}")


def is_onnx_model(obj: Any) -> bool:
    """True for what ``qref.check`` / ``qref.run`` hand to this module: a ModelProto, or a path
    (str / PathLike) ending in ``.onnx``."""
    if isinstance(obj, (str, os.PathLike)):
        return os.fspath(obj).lower().endswith(".onnx")
    t = type(obj)
    return t.__name__ == "ModelProto" and t.__module__.startswith("onnx")


def _providers() -> List[str]:
    return ["CPUExecutionProvider"]


def session(model_proto, *, optimize: bool = True, threads: int = 0):
    ort = _ort()
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(model_proto.SerializeToString(), so, providers=_providers())


def optimized_model(model_proto):
    """The graph a default ``InferenceSession`` runs (saved by ``optimized_model_filepath``)."""
    ort, onnx = _ort(), _onnx()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "optimized.onnx")
        so = ort.SessionOptions()
        so.optimized_model_filepath = path
        so.log_severity_level = 3
        ort.InferenceSession(model_proto.SerializeToString(), so, providers=_providers())
        return onnx.load(path)


def initializers(model_proto) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model_proto.graph.initializer}


def attrs(node) -> Dict[str, Any]:
    onnx = _onnx()
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def intermediate_values(opt_model, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Every value of the optimized graph as ORT computes it for ``feeds`` (inputs, initializers
    and each node output)."""
    onnx = _onnx()
    m = onnx.ModelProto()
    m.CopyFrom(opt_model)
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for name in node.output:
            if name and name not in have:
                m.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    sess = session(m, optimize=False)
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(names, feeds)))
    vals.update(initializers(opt_model))
    vals.update(feeds)
    return vals


class NodeRunner:
    """Runs single nodes of a graph with ORT (for the float nodes qref does not compute)."""

    def __init__(self, opt_model) -> None:
        self.opsets = list(opt_model.opset_import)
        self.ir_version = opt_model.ir_version
        self._cache: Dict[int, Any] = {}

    def run(self, index: int, node, inputs: Sequence[Any]) -> List[np.ndarray]:
        onnx = _onnx()
        names = [n for n in node.input]
        key = (index, tuple(None if v is None else (v.dtype.str, v.shape) for v in inputs))
        sess = self._cache.get(key)
        if sess is None:
            g_inputs = []
            seen = set()
            for name, v in zip(names, inputs):
                if not name or name in seen:
                    continue
                seen.add(name)
                g_inputs.append(onnx.helper.make_tensor_value_info(
                    name, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)))
            g = onnx.helper.make_graph([node], f"qref_node_{index}", g_inputs,
                                       [onnx.ValueInfoProto(name=o) for o in node.output if o])
            m = onnx.helper.make_model(g, opset_imports=self.opsets)
            m.ir_version = self.ir_version
            sess = session(m, optimize=False)
            self._cache[key] = sess
        feeds = {}
        for name, v in zip(names, inputs):
            if name:
                feeds[name] = v
        outs = sess.run(None, feeds)
        return list(outs)
