"""``qref.check`` / ``qref.run`` for PT2E models (the dispatch in qref.check / qref.models calls here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from .floatops import Interpreter, is_int8_node, other_input, qd_name
from .ops import NotReproduced, describe, parse_call, run_op
from .program import compile_model, run_with
from .report import FP32, MISMATCH, NOT_VERIFIED, OK, Pt2eReport, Row


def is_pt2e_model(model: Any) -> bool:
    """A GraphModule with quantized_decomposed quantize / dequantize nodes (torchao's convert_pt2e)."""
    graph = getattr(model, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return False
    return any(qd_name(n) is not None for n in graph.nodes)


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
             if n.op == "call_function" and is_int8_node(n)]
    if len(nodes) != len(prog.calls):
        return [(None, c) for c in prog.calls]
    return list(zip(nodes, prog.calls))


def _unflatten(values: list, like: Any) -> Any:
    import torch

    flat, spec = torch.utils._pytree.tree_flatten(like)
    if len(flat) != len(values):
        raise NotReproduced(f"the post-grad graph has {len(values)} outputs, the compiled model returns {len(flat)}")
    return torch.utils._pytree.tree_unflatten(list(values), spec)


def _interpretable(prog: Any, pairs: list) -> bool:
    return prog.graph is not None and all(n is not None for n, _ in pairs)


def _first_failure(res: Any) -> str:
    if res.failed:
        n, why = next(iter(res.failed.items()))
        return f"{n.name}: {why}"
    missing = [o for o, v in zip(res.output_nodes, res.outputs) if v is None]
    return f"output {missing[0]} not computed" if missing else "not reproduced"


def run_compiled(converted: Any, *inputs: Any, isa: str = "auto") -> Any:
    """``torch.compile(converted)(*inputs)`` (freezing on) computed by qref: the post-grad graph
    inductor lowered, run node by node with qref's oneDNN int8 ops and its reproduction of
    inductor's float code (``qref.pt2e.floatops``). Raises ``qref.pt2e.NotReproduced`` for a node
    whose arithmetic qref does not reproduce. Fallback, only when the post-grad graph could not be
    matched to the recorded int8 calls: the compiled code itself with qref's int8 ops substituted
    (the float code between them is then inductor's own)."""
    _check_inputs("run", inputs)
    prog = compile_model(converted, inputs)
    pairs = _pairs(prog)
    if not _interpretable(prog, pairs):
        return run_with(prog, inputs, _qref_compute(isa))
    res = Interpreter(prog, inputs, isa, pairs=pairs).run()
    if not res.complete:
        raise NotReproduced(_first_failure(res))
    return _unflatten(res.outputs, prog.output)


def _compare_flat(mine: list, ref: list) -> tuple:
    mm = n = 0
    dmax = 0.0
    for a, b in zip(mine, ref):
        m1, n1, d1 = _compare(a, b)
        mm += m1
        n += n1
        dmax = max(dmax, d1 or 0.0)
    return mm, n, dmax


def _region(node: Any) -> bool:
    """A node of inductor's generated float code (neither an input, a constant, nor an int8 op)."""
    return node.op == "call_function" and not is_int8_node(node)


def check_compiled(converted: Any, *inputs: Any, isa: str = "auto", _program: Any = None) -> Pt2eReport:
    import torch

    _check_inputs("check", inputs)
    prog = _program or compile_model(converted, inputs)
    rep = Pt2eReport(compiled=True, isa=isa)
    pairs = _pairs(prog)
    computed = {}  # int8 node -> qref's output for the recorded arguments
    for i, (node, call) in enumerate(pairs):
        op = parse_call(call.name, call.args)
        name = f"{i}:{node.name if node is not None else call.name}"
        try:
            mine = run_op(op, isa)
        except NotReproduced as e:
            rep.rows.append(Row(name, call.name, NOT_VERIFIED, 0, int(call.output.numel()), f"{describe(op)}: {e}"))
            continue
        m, n, d = _compare(mine, call.output)
        rep.rows.append(Row(name, call.name, OK if m == 0 else MISMATCH, m, n, describe(op), d))
        if node is not None:
            computed[node] = mine
    if not _interpretable(prog, pairs):
        _check_without_graph(rep, prog, inputs, isa)
        return rep
    ref_flat, _ = torch.utils._pytree.tree_flatten(prog.output)
    # inductor's float code, from torch's own observed values (the graph inputs and each int8 op's
    # recorded output), against what it feeds that is observable: each int8 op's input bytes and
    # binary operand (recorded at the call) and the program's outputs
    seeded = Interpreter(prog, inputs, isa, seeded=True, pairs=pairs).run()
    sinks = []  # (node, reference tensor, label)
    for node, call in pairs:
        x = node.kwargs.get("x")
        if x is not None and _region(x):
            sinks.append((x, call.args[0], f"{node.name}'s input"))
        o = other_input(node)
        if o is not None and ".binary" in call.name and _region(o):
            sinks.append((o, call.args[6], f"{node.name}'s binary operand"))
    if len(seeded.output_nodes) == len(ref_flat):
        for o, ref in zip(seeded.output_nodes, ref_flat):
            if isinstance(o, torch.fx.Node) and _region(o):
                sinks.append((o, ref, "the output"))
    results = {}  # sink index -> (mismatches, elements, max diff) or None (not computed)
    for k, (s, ref, _) in enumerate(sinks):
        v = seeded.env.get(s)
        if v is not None and v.numel() == ref.numel() and tuple(v.shape) != tuple(ref.shape):
            v = v.reshape(ref.shape)
        results[k] = None if v is None or s in seeded.failed or s in seeded.blocked else _compare(v, ref)
    feeds = {}  # float node -> sink indices it reaches through float code
    for k, (s, _, _) in enumerate(sinks):
        stack, seen = [s], set()
        while stack:
            n = stack.pop()
            if n in seen or not _region(n):
                continue
            seen.add(n)
            feeds.setdefault(n, []).append(k)
            stack.extend(n.all_input_nodes)
    sink_rows = {s for s, _, _ in sinks if qd_name(s) == "quantize_per_tensor"}
    for n in prog.graph.nodes:
        if not _region(n) or "inductor_force_stride_order" in str(n.target):
            continue
        kind = "quantize_per_tensor (inductor)" if n in sink_rows else str(n.target)
        if n in sink_rows:
            scale, zp = float(n.args[1]), int(n.args[2])
            what = f"scale={scale:g} zp={zp} of {getattr(n.args[0], 'name', n.args[0])}"
        else:
            what = str(n.target)
        if n in seeded.failed:
            rep.rows.append(Row(n.name, kind, NOT_VERIFIED, 0, 0, f"{what}: {seeded.failed[n]}"))
            continue
        if n in seeded.blocked:
            b = seeded.blocked[n]
            rep.rows.append(Row(n.name, kind, NOT_VERIFIED, 0, 0, f"{what}: depends on {b.name}, not reproduced"))
            continue
        done = [(k, results[k]) for k in feeds.get(n, []) if results[k] is not None]
        if not done:
            rep.rows.append(Row(n.name, kind, NOT_VERIFIED, 0, 0,
                                f"{what}: feeds nothing observable that qref computes (no int8 op input, no output)"))
            continue
        mm = sum(r[0] for _, r in done)
        el = sum(r[1] for _, r in done)
        dmax = max((r[2] or 0.0) for _, r in done)
        via = ", ".join(sorted({sinks[k][2] for k, _ in done}))
        detail = what if n in sink_rows else f"{what}: through {via}"
        rep.rows.append(Row(n.name, kind, OK if mm == 0 else MISMATCH, mm, el, detail, dmax))
    # end to end: qref's own computation of the whole program
    own = Interpreter(prog, inputs, isa, pairs=pairs, computed=computed).run()
    if own.complete and len(own.outputs) == len(ref_flat):
        mm, n, dmax = _compare_flat(own.outputs, ref_flat)
        rep.rows.append(Row("end to end", "output", OK if mm == 0 else MISMATCH, mm, n,
                            "qref's computation of the program (int8 ops and inductor's float code) vs "
                            "torch.compile(converted)", dmax))
    elif own.complete:
        rep.rows.append(Row("end to end", "output", NOT_VERIFIED, 0, 0,
                            f"the post-grad graph has {len(own.outputs)} outputs, the compiled model returns "
                            f"{len(ref_flat)}"))
    else:
        rep.rows.append(Row("end to end", "output", NOT_VERIFIED, 0, 0,
                            "some ops are not reproduced (rows above): " + _first_failure(own)))
    return rep


def _check_without_graph(rep: Pt2eReport, prog: Any, inputs: tuple, isa: str) -> None:
    """No usable post-grad graph: only the int8 ops are verified; end to end runs the compiled code
    with qref's int8 ops substituted (inductor's own float code between them)."""
    import torch

    if any(r.status == NOT_VERIFIED for r in rep.rows):
        rep.rows.append(Row("end to end", "output", NOT_VERIFIED, 0, 0, "some ops are not reproduced (rows above)"))
        return
    mine = run_with(prog, inputs, _qref_compute(isa))
    ref_flat, _ = torch.utils._pytree.tree_flatten(prog.output)
    mine_flat, _ = torch.utils._pytree.tree_flatten(mine)
    mm, n, dmax = _compare_flat(mine_flat, ref_flat)
    rep.rows.append(Row("end to end", "output", OK if mm == 0 else MISMATCH, mm, n,
                        "qref's int8 ops inside the compiled program (inductor's float code between them; the "
                        "post-grad graph could not be matched to the int8 calls) vs torch.compile(converted)", dmax))


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
            kind = qd_name(n)
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
