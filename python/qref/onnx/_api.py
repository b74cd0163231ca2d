"""check / run / explain on ONNX models (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .. import _core
from ..engines import mlas
from . import _graph
from ._ops import ARITHMETIC, OPS, NotInt8, UnsupportedNode, conv_accumulators


def ort_host(host: str = "auto") -> str:
    """Which MLAS U8S8 kernels to reproduce: ``"vnni"`` (exact int32) or ``"avx2"`` (int16 pair
    saturation). ``"auto"``: this CPU, as MLAS's platform.cpp picks by CPUID (AVX512-VNNI with
    AVX512BW/DQ/VL, or AVX-VNNI, give exact kernels; AVX2 and AVX512-core without VNNI saturate)."""
    if host in mlas.HOSTS:
        return host
    if host != "auto":
        raise ValueError(f"host={host!r}: must be 'auto', 'vnni' or 'avx2'")
    f = _core.cpu_features()
    avx512_core = f.get("avx512f") and f.get("avx512bw") and f.get("avx512dq") and f.get("avx512vl")
    if f.get("avxvnni") or (avx512_core and f.get("avx512vnni")):
        return "vnni"
    return "avx2"


@dataclass
class NodeResult:
    """One node of the optimized graph: who computed it and, for int8 nodes, how many output
    elements differ from ORT's."""

    index: int
    name: str
    op: str
    computed_by: str  # "qref" | "ort" (float node) | "unsupported"
    elements: int = 0
    mismatches: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.computed_by != "unsupported" and self.mismatches == 0


@dataclass
class OnnxReport:
    """``ok``: every int8 node verified equal, none unsupported, and the whole-model run equal to
    ``session.run`` output for output."""

    host: str
    nodes: List[NodeResult] = field(default_factory=list)
    outputs_equal: Optional[bool] = None
    output_mismatches: List[int] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def int8_nodes(self) -> List[NodeResult]:
        return [n for n in self.nodes if n.computed_by != "ort"]

    @property
    def ok(self) -> bool:
        return bool(self.outputs_equal) and all(n.ok for n in self.int8_nodes)

    def summary(self) -> str:
        lines = [f"ONNX Runtime model, MLAS host semantics: {self.host}"]
        for n in self.nodes:
            if n.computed_by == "ort":
                lines.append(f"  [{n.index:3d}] {n.op:<28} {n.name:<40} float node, run by ORT")
            elif n.computed_by == "unsupported":
                lines.append(f"  [{n.index:3d}] {n.op:<28} {n.name:<40} NOT VERIFIED: {n.note}")
            else:
                verdict = "OK" if n.mismatches == 0 else f"{n.mismatches} of {n.elements} differ"
                lines.append(f"  [{n.index:3d}] {n.op:<28} {n.name:<40} {n.elements} elements, {verdict}")
        lines.append(f"whole model (qref.run vs session.run): "
                     f"{'equal' if self.outputs_equal else 'DIFFERENT'}"
                     + ("" if self.outputs_equal else f" (mismatching elements per output: {self.output_mismatches})"))
        lines.extend(self.notes)
        lines.append("OK" if self.ok else "NOT OK")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _op_key(node) -> tuple:
    dom = node.domain if node.domain not in ("ai.onnx",) else ""
    return (dom, node.op_type)


def _check_feeds(feeds: Any) -> Dict[str, np.ndarray]:
    if not isinstance(feeds, dict):
        raise TypeError(f"feeds must be a dict of input name -> numpy array (as for InferenceSession.run), "
                        f"got {type(feeds).__name__}")
    out = {}
    for k, v in feeds.items():
        if not isinstance(k, str):
            raise TypeError(f"feeds keys must be input names (str), got {k!r}")
        out[k] = np.asarray(v)
    return out


def _compute(node, idx, inputs, host, runner):
    """(outputs, computed_by, note)"""
    fn = OPS.get(_op_key(node))
    if fn is not None:
        try:
            return fn(_graph.attrs(node), inputs, host), "qref", ""
        except NotInt8:
            pass
        except UnsupportedNode as e:
            return runner.run(idx, node, inputs), "unsupported", str(e)
    elif any(v is not None and v.dtype in (np.uint8, np.int8) for v in inputs) and node.op_type not in (
            "Shape", "Size", "Cast"):
        return runner.run(idx, node, inputs), "unsupported", f"no qref implementation of {node.op_type} on 8-bit data"
    return runner.run(idx, node, inputs), "ort", ""


def _prepare(model):
    proto = _graph.load_model(model)
    opt = _graph.optimized_model(proto)
    return proto, opt


def run(model: Any, feeds: Dict[str, Any], *, host: str = "auto") -> List[np.ndarray]:
    """The outputs of ``InferenceSession(model).run(None, feeds)``, computed with qref: each int8
    node of the optimized graph by qref's MLAS engine, each float node by ORT alone."""
    feeds = _check_feeds(feeds)
    proto, opt = _prepare(model)
    return _run_optimized(proto, opt, feeds, ort_host(host))[0]


def _run_optimized(proto, opt, feeds, host):
    vals: Dict[str, np.ndarray] = dict(_graph.initializers(opt))
    vals.update(feeds)
    runner = _graph.NodeRunner(opt)
    who = []
    for idx, node in enumerate(opt.graph.node):
        inputs = [vals.get(n) if n else None for n in node.input]
        outs, by, note = _compute(node, idx, inputs, host, runner)
        who.append((by, note))
        for name, v in zip(node.output, outs):
            if name:
                vals[name] = np.asarray(v)
    names = [o.name for o in proto.graph.output]
    return [vals[n] for n in names], who


def _same(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing elements (shape or dtype differences count every element)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return max(a.size, b.size, 1)
    if a.dtype.kind == "f":
        return int(np.count_nonzero(a.view(np.uint8 if a.itemsize == 1 else f"u{a.itemsize}")
                                    != b.view(np.uint8 if b.itemsize == 1 else f"u{b.itemsize}")))
    return int(np.count_nonzero(a != b))


def check(model: Any, feeds: Dict[str, Any], *, host: str = "auto") -> OnnxReport:
    """Verify every int8 node of the graph a default ``InferenceSession`` runs, on ORT's own
    intermediate values, and the whole model against ``session.run``."""
    feeds = _check_feeds(feeds)
    host = ort_host(host)
    proto, opt = _prepare(model)
    rep = OnnxReport(host=host)
    this_host = ort_host("auto")
    if host != this_host:
        rep.notes.append(f"host={host!r} differs from this CPU ({this_host!r}): ORT here runs {this_host!r} "
                         f"kernels, so U8S8 nodes may differ; the {host!r} results are from the formula, not run here.")
    vals = _graph.intermediate_values(opt, feeds)
    runner = _graph.NodeRunner(opt)
    for idx, node in enumerate(opt.graph.node):
        inputs = [vals.get(n) if n else None for n in node.input]
        outs, by, note = _compute(node, idx, inputs, host, runner)
        r = NodeResult(index=idx, name=node.name or (node.output[0] if node.output else ""),
                       op=(node.domain + ":" if node.domain else "") + node.op_type, computed_by=by, note=note)
        if by == "qref":
            for name, v in zip(node.output, outs):
                if name:
                    r.elements += int(np.asarray(v).size)
                    r.mismatches += _same(v, vals[name])
            if _op_key(node) not in ARITHMETIC:
                r.note = "data movement"
        rep.nodes.append(r)
    sess = _graph.session(proto)
    expected = sess.run(None, feeds)
    got, _ = _run_optimized(proto, opt, feeds, host)
    rep.output_mismatches = [_same(g, e) for g, e in zip(got, expected)]
    rep.outputs_equal = all(m == 0 for m in rep.output_mismatches) and len(got) == len(expected)
    return rep


@dataclass
class OnnxExplanation:
    node: str
    op: str
    index: tuple
    lines: List[str]
    value: int
    ort_value: Optional[int]

    def __str__(self) -> str:
        return "\n".join(self.lines)


def explain(model: Any, feeds: Dict[str, Any], output: str, index: Any, *, host: str = "auto") -> OnnxExplanation:
    """Derive element ``index`` of node output ``output`` (a QLinearConv, QGemm or QLinearMatMul
    of the optimized graph) step by step, from the inputs ORT computed for the node."""
    feeds = _check_feeds(feeds)
    host = ort_host(host)
    proto, opt = _prepare(model)
    node = next((n for n in opt.graph.node if output in n.output), None)
    if node is None:
        names = [o for n in opt.graph.node for o in n.output]
        raise ValueError(f"output={output!r}: no node of the optimized graph produces it; outputs are {names}")
    vals = _graph.intermediate_values(opt, feeds)
    inputs = [vals.get(n) if n else None for n in node.input]
    at = _graph.attrs(node)
    ort_out = vals[output]
    index = tuple(int(i) for i in np.atleast_1d(index))
    if len(index) != ort_out.ndim or any(not 0 <= i < s for i, s in zip(index, ort_out.shape)):
        raise ValueError(f"index={index}: out of range for the output of shape {ort_out.shape}")
    key = _op_key(node)
    lines = [f"{node.op_type} node {node.name!r}, output {output!r}{list(index)} (MLAS, {host} host)"]
    if key[1] == "QLinearConv":
        x, xs, xz, w, ws, wz, ys, yz = inputs[:8]
        b = inputs[8] if len(inputs) > 8 else None
        cl = bool(at.get("channels_last", 0))
        acc, rank = conv_accumulators(x, int(np.asarray(xz).reshape(-1)[0]), w, int(np.asarray(wz).reshape(-1)[0]),
                                      at, host, cl)
        if rank == 1:
            n, o, p = (index if not cl else (index[0], index[2], index[1]))
            a_idx, oc = (n, 0, p, o), o
        else:
            n, o, h, w_ = (index if not cl else (index[0], index[3], index[1], index[2]))
            a_idx, oc = (n, h, w_, o), o
        a = int(acc[a_idx])
        scales = mlas.output_scales(xs, ws, ys)
        s = scales[oc if scales.size > 1 else 0]
        bias = 0 if b is None else int(np.asarray(b).reshape(-1)[oc])
    elif key[1] in ("QGemm", "QLinearMatMul"):
        if key[1] == "QGemm":
            a_, sa, az, bm, sb, bz = inputs[:6]
            c, ys, yz = (inputs + [None] * 9)[6:9]
            a2 = a_.T if at.get("transA", 0) else a_
            bt = bm if at.get("transB", 0) else bm.T
        else:
            a_, sa, az, bm, sb, bz, ys, yz = inputs[:8]
            c = None
            a2 = a_.reshape(-1, a_.shape[-1])
            bt = bm.T
        m, oc = (index[0], index[1]) if key[1] == "QGemm" else (int(np.ravel_multi_index(index[:-1], a_.shape[:-1])), index[-1])
        acc = mlas.qgemm(np.ascontiguousarray(a2[m:m + 1]), int(np.asarray(az).reshape(-1)[0]),
                         np.ascontiguousarray(bt), np.asarray(bz).reshape(-1).astype(np.int32), host=host)
        a = int(acc[0, oc])
        alpha = np.float32(at.get("alpha", 1.0)) if key[1] == "QGemm" else None
        sbv = np.asarray(sb, np.float32).reshape(-1)
        sav = np.float32(np.asarray(sa).reshape(-1)[0])
        prod = (alpha * sav if alpha is not None else sav) * sbv[oc if sbv.size > 1 else 0]
        s = np.float32(prod / np.float32(np.asarray(ys).reshape(-1)[0]))
        bias = 0 if c is None else int(np.broadcast_to(np.asarray(c), (a2.shape[0], bt.shape[0]))[m, oc])
    else:
        raise ValueError(f"explain covers QLinearConv, QGemm and QLinearMatMul nodes, not {node.op_type}")
    zp = int(np.asarray(yz).reshape(-1)[0])
    dt = np.asarray(yz).dtype
    lo, hi = (-128, 127) if dt == np.int8 else (0, 255)
    v = np.int32(np.int64(a) + bias)
    f = np.float32(np.float32(v) * np.float32(s))
    fc = min(max(f, np.float32(lo - zp)), np.float32(hi - zp))
    r = int(np.rint(fc))
    q = r + zp
    lines += [
        f"  1. int32 accumulator sum (x - x_zp)(w - w_zp) = {a}"
        + ("  (U8S8 pairs saturated to int16, as vpmaddubsw)" if host == "avx2" else "  (exact, VNNI)"),
        f"  2. + int32 bias {bias} = {int(v)}",
        f"  3. output scale f32(f32(x_scale * w_scale) / y_scale) = {float(s)!r}",
        f"  4. f32(float({int(v)}) * scale) = {float(f)!r}",
        f"  5. clamp to [{lo - zp}, {hi - zp}] in float = {float(fc)!r}",
        f"  6. round half to even (cvtps2dq) = {r}",
        f"  7. + zero point {zp} = {q}",
        f"  ORT's value: {int(ort_out[index])}",
    ]
    return OnnxExplanation(node=node.name, op=node.op_type, index=index, lines=lines, value=q,
                           ort_value=int(ort_out[index]))
