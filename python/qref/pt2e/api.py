"""``qref.check`` / ``qref.run`` for PT2E models (the dispatch in qref.check / qref.models calls here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .ops import NotReproduced, describe, parse_call, run_op
from .program import compile_model, run_with
from .report import FP32, MISMATCH, NOT_VERIFIED, OK, Pt2eReport, Row

_INT8_NODES = ("qconv", "qconv_binary", "qlinear", "qlinear_binary")
_QD = "quantized_decomposed"


def is_pt2e_model(model: Any) -> bool:
    """A GraphModule with quantized_decomposed quantize / dequantize nodes (torchao's convert_pt2e)."""
    graph = getattr(model, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return False
    return any(_qd_name(n) is not None for n in graph.nodes)


def _qd_name(node: Any) -> Any:
    if node.op != "call_function":
        return None
    t = node.target
    ns = getattr(t, "namespace", None)
    if ns == _QD:
        return str(getattr(t, "_overloadpacket", t)).split(".")[-1]
    return None


def _check_inputs(fn: str, inputs: tuple) -> None:
    import torch

    if not inputs:
        raise ValueError(f"{fn}: give the model's inputs after the model (got none)")
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{fn}: input {i} must be a torch.Tensor, got {type(x).__name__}")


def _bits(t: Any) -> np.ndarray:
    import torch

    t = t.detach().contiguous()
    if t.dtype in (torch.float32,):
        return t.view(torch.int32).numpy()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy()
    return t.numpy()


def _compare(mine: Any, ref: Any) -> tuple:
    """(mismatching elements, elements, max |diff| in float): bitwise for float outputs."""
    if tuple(mine.shape) != tuple(ref.shape) or mine.dtype != ref.dtype:
        return int(ref.numel()), int(ref.numel()), None
    a, b = _bits(mine), _bits(ref)
    mism = int((a != b).sum())
    d = (mine.double() - ref.double()).abs()
    return mism, int(ref.numel()), float(d.max()) if d.numel() else 0.0


def _qref_compute(isa: str):
    def compute(name: str, args: list) -> Any:
        return run_op(parse_call(name, args), isa)
    return compute


def _pairs(prog: Any) -> list:
    """(post-grad node, recorded call) for every int8 op, in program order."""
    if prog.graph is None:
        return [(None, c) for c in prog.calls]
    nodes = [n for n in prog.graph.nodes
             if n.op == "call_function" and getattr(n.target, "__name__", "") in _INT8_NODES]
    if len(nodes) != len(prog.calls):
        return [(None, c) for c in prog.calls]
    return list(zip(nodes, prog.calls))


def run_compiled(converted: Any, *inputs: Any, isa: str = "auto") -> Any:
    """``torch.compile(converted)(*inputs)`` (freezing on) with every oneDNN int8 op computed by qref;
    the float code between them is inductor's. Raises ``qref.pt2e.NotReproduced`` for an op whose
    arithmetic qref does not reproduce."""
    _check_inputs("run", inputs)
    prog = compile_model(converted, inputs)
    return run_with(prog, inputs, _qref_compute(isa))


def check_compiled(converted: Any, *inputs: Any, isa: str = "auto", _program: Any = None) -> Pt2eReport:
    import torch

    _check_inputs("check", inputs)
    prog = _program or compile_model(converted, inputs)
    rep = Pt2eReport(compiled=True, isa=isa)
    reproduced = True
    outputs = {}
    pairs = _pairs(prog)
    for i, (node, call) in enumerate(pairs):
        op = parse_call(call.name, call.args)
        name = f"{i}:{node.name if node is not None else call.name}"
        try:
            mine = run_op(op, isa)
        except NotReproduced as e:
            reproduced = False
            rep.rows.append(Row(name, call.name, NOT_VERIFIED, 0, int(call.output.numel()), f"{describe(op)}: {e}"))
            continue
        m, n, d = _compare(mine, call.output)
        rep.rows.append(Row(name, call.name, OK if m == 0 else MISMATCH, m, n, describe(op), d))
        if node is not None:
            outputs[node] = call.output
    # inductor's quantize feeding each int8 op from the graph input or another int8 op's float output
    placeholders = [n for n in prog.graph.nodes if n.op == "placeholder"] if prog.graph is not None else []
    flat_inputs = [x for x in inputs if isinstance(x, torch.Tensor)]
    for node, call in pairs:
        if node is None:
            continue
        src = node.kwargs.get("x")
        if src is None or _qd_name(src) != "quantize_per_tensor":
            continue
        f = src.args[0]
        if f in placeholders and len(placeholders) == len(flat_inputs):
            fl = flat_inputs[placeholders.index(f)]
        elif f in outputs and outputs[f].dtype == torch.float32:
            fl = outputs[f]
        else:
            continue
        scale, zp, qmin, qmax = (float(src.args[1]), int(src.args[2]), int(src.args[3]), int(src.args[4]))
        q = _core.inductor_quantize(np.ascontiguousarray(fl.detach().contiguous().numpy()), scale, zp, qmin, qmax)
        ref = call.args[0].detach().contiguous()
        m, n, d = _compare(torch.from_numpy(q), ref)
        rep.rows.append(Row(f"{src.name}", "quantize_per_tensor (inductor)", OK if m == 0 else MISMATCH, m, n,
                            f"scale={scale:g} zp={zp} of {f.name}", d))
    # float ops inductor generates code for that qref does not reproduce
    if prog.graph is not None:
        skip = {"placeholder", "output", "get_attr"}
        for n in prog.graph.nodes:
            if n.op in skip or _qd_name(n) is not None:
                continue
            tname = getattr(n.target, "__name__", str(n.target))
            if tname in _INT8_NODES or "inductor_force_stride_order" in str(n.target):
                continue
            reproduced = False
            rep.rows.append(Row(n.name, str(n.target), NOT_VERIFIED, 0, 0,
                                "float op in inductor's generated code: not reproduced by qref"))
    # end to end: the compiled program with qref's int8 ops
    if reproduced:
        mine = run_with(prog, inputs, _qref_compute(isa))
        ref_flat, _ = torch.utils._pytree.tree_flatten(prog.output)
        mine_flat, _ = torch.utils._pytree.tree_flatten(mine)
        mm = n = 0
        dmax = 0.0
        for a, b in zip(mine_flat, ref_flat):
            m1, n1, d1 = _compare(a, b)
            mm += m1
            n += n1
            dmax = max(dmax, d1 or 0.0)
        rep.rows.append(Row("end to end", "output", OK if mm == 0 else MISMATCH, mm, n,
                            "qref's int8 ops inside the compiled program vs torch.compile(converted)", dmax))
    else:
        rep.rows.append(Row("end to end", "output", NOT_VERIFIED, 0, 0,
                            "some ops are not reproduced (rows above)"))
    return rep


def check_converted(converted: Any, *inputs: Any, isa: str = "auto") -> Pt2eReport:
    """The uncompiled converted model: verify each quantize / dequantize op of its q/dq graph (as torch
    runs it eagerly) and list the layers that run as fp32 simulation there."""
    import torch
    import torch.fx

    _check_inputs("check", inputs)
    rep = Pt2eReport(compiled=False, isa=isa)
    rows = rep.rows

    class Rec(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            kind = _qd_name(n)
            if kind in ("quantize_per_tensor", "dequantize_per_tensor"):
                a = [self.env[x] if isinstance(x, torch.fx.Node) else x for x in n.args]
                src, scale, zp, qmin, qmax = a[0], a[1], a[2], a[3], a[4]
                scale, zp = (float(scale), int(zp)) if not hasattr(scale, "numel") else (float(scale), int(zp))
                if kind == "quantize_per_tensor" and src.dtype == torch.float32 and out.dtype == torch.uint8:
                    q = _core.inductor_quantize(np.ascontiguousarray(src.detach().contiguous().numpy()), scale, zp,
                                                int(qmin), int(qmax))
                    m, k, d = _compare(torch.from_numpy(q), out)
                    rows.append(Row(n.name, kind, OK if m == 0 else MISMATCH, m, k, f"scale={scale:g} zp={zp}", d))
                elif kind == "dequantize_per_tensor" and src.dtype == torch.uint8:
                    x = _core.inductor_dequantize(np.ascontiguousarray(src.detach().contiguous().numpy()), scale, zp)
                    m, k, d = _compare(torch.from_numpy(x), out)
                    rows.append(Row(n.name, kind, OK if m == 0 else MISMATCH, m, k, f"scale={scale:g} zp={zp}", d))
                else:
                    rows.append(Row(n.name, kind, NOT_VERIFIED, 0, int(out.numel()),
                                    f"{src.dtype} -> {out.dtype}: not reproduced"))
            elif n.op == "call_function" and getattr(n.target, "__name__", "").split(".")[0] in (
                    "conv1d", "conv2d", "linear", "convolution"):
                rows.append(Row(n.name, str(n.target), FP32, 0, 0,
                                "runs as fp32 simulation here (dequantize -> float op -> quantize); "
                                "torch.compile runs it as a oneDNN int8 op (check with compile=True)"))
            return out

    with torch.no_grad():
        Rec(converted).run(*inputs)
    return rep


def check(model: Any, *inputs: Any, compile: bool = False, isa: str = "auto") -> Pt2eReport:
    return check_compiled(model, *inputs, isa=isa) if compile else check_converted(model, *inputs, isa=isa)


def run(model: Any, *inputs: Any, compile: bool = False, isa: str = "auto") -> Any:
    if not compile:
        raise ValueError("run: a PT2E converted model runs as qref's int8 program only with compile=True "
                         "(what torch.compile runs); without it, the model itself is float simulation")
    return run_compiled(model, *inputs, isa=isa)


def check_saved(path: str, input_shape: Any, isa: str = "auto") -> Pt2eReport:
    """``qref check model.pt2 --input-shape N,C,H,W``: a converted PT2E model saved with
    ``torch.export.save``, checked as torch.compile runs it on a seeded ``torch.rand`` input."""
    import torch

    if not input_shape:
        raise ValueError(f"check: {path!r} is a saved ExportedProgram; give --input-shape (e.g. 1,3,224,224)")
    import torchao.quantization.pt2e  # noqa: F401  registers the quantized_decomposed ops the file names

    ep = torch.export.load(path)
    model = ep.module()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(*input_shape, generator=g)
    return check_compiled(model, x, isa=isa)
