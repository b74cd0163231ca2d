"""Which bytes other hosts give for a PT2E model's int8 ops (``qref.runtimes`` on a converted model).

A PT2E model compiled by ``torch.compile`` calls oneDNN for every int8 op on every x86 host (there is
no fbgemm path), so the hosts that differ are oneDNN's CPU classes. ``hosts(converted, *inputs)``
compiles the model once (as ``qref.check(..., compile=True)`` does), takes torch's own recorded inputs
to each int8 op and recomputes the op as each class computes it (``qref.pt2e.ops.run_op(op, isa)``),
then counts the output elements that differ, bitwise, from the bytes torch gave on this host. The
column of this process's class is "run here" (its count is qref's own check: 0 when qref reproduces
this host); the others are qref's formulas. An op qref does not reproduce on a class is n/a there,
with the reason, never a number.

torch is imported inside the functions only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..common.errors import OneDNNNotSupportedError
from ..common.onednn_isa import _UNSUPPORTED_CLASSES, describe_class, resolve_class
from ..common.records import find_named
from .api import _bits, _pairs, _region
from .floatops import qd_name as _qd_name
from .ops import NotReproduced, compensated_sum, describe, parse_call, run_op
from .program import compile_model, run_with


@dataclass(frozen=True)
class HostClass:
    """One column: ``isa`` is qref's name of the oneDNN class (``qref.common.onednn_isa``)."""

    name: str
    isa: str
    label: str


# oneDNN's x86 classes as qref distinguishes them (qref.common.onednn_isa.ONEDNN_ISAS), best first. The sse41
# class runs the avx2 class's jit_uni kernels with the same arithmetic, so it shares the avx2 column.
HOSTS: tuple = (
    HostClass("pt2e-amx", "amx", "oneDNN AMX brgemm builds (AMX hosts, e.g. Sapphire Rapids); a qlinear needs "
              "the AMX host itself (oneDNN picks its matmul build there per shape)"),
    HostClass("pt2e-vnni", "vnni", "oneDNN avx512_core_vnni kernels (AVX512-VNNI hosts, e.g. Cascade Lake, Ice Lake)"),
    HostClass("pt2e-avx512", "avx512_core", "oneDNN avx512_core kernels (AVX512 without VNNI, e.g. Skylake-SP)"),
    HostClass("pt2e-avx2-vnni", "avx2_vnni", "oneDNN avx2_vnni kernels (AVX2 hosts with AVX-VNNI, e.g. Alder Lake)"),
    HostClass("pt2e-avx2", "avx2", "oneDNN jit_uni kernels (AVX2 hosts without VNNI; SSE4.1-only hosts compute the "
              "same)"),
)

_SAME_COLUMN = {"sse41": "avx2"}

_WHY = {
    "amx": "the AMX brgemm micro-kernel multiplies A by one combined scale f32(x_scale*w_scale[o]) and compensates "
           "the zero point in float (depthwise convs run the vnni kernels); oneDNN may also pick its "
           "avx512_core_vnni kernels on an AMX host for some shapes (qlinear: read from torch's log on that host), "
           "which give pt2e-vnni's bytes",
    "vnni": "exact int32 sums (vpdpbusd), separate scales f32(f32(A*x_scale)*w_scale[o])",
    "avx512_core": "vpmaddubsw saturates each pair of u8*s8 products to int16 (depthwise convs are exact); "
                   "separate scales as vnni",
    "avx2": "vpmaddubsw saturates each pair of u8*s8 products to int16 (depthwise convs are exact), and A is "
            "multiplied by one combined scale f32(x_scale*w_scale[o])",
}


@dataclass
class HostRow:
    """One int8 op (or the end-to-end output): per column, the elements that differ from this host's bytes
    (``differing``), or why the column is not computed (``errors``), and what makes it differ (``why``).
    ``outputs``: each column's tensor, kept only with ``keep_outputs=True``."""

    name: str
    kind: str
    detail: str
    numel: int = 0
    differing: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    why: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "outputs"}
        return d


@dataclass
class Pt2eHostsReport:
    """``qref.runtimes`` on a PT2E model. ``hosts``: the columns (``HostClass``); ``here``: the column of this
    process's oneDNN class ("" when none); ``rows``: one per int8 op call of the compiled program, in call order;
    ``end_to_end``: the program's output with every int8 op computed as each class computes it."""

    hosts: tuple
    here: str
    here_class: str
    rows: list = field(default_factory=list)
    end_to_end: Optional[HostRow] = None

    def how(self, name: str) -> str:
        return "run here" if name == self.here else "formula"

    def __getitem__(self, name: str) -> HostRow:
        if self.end_to_end is not None and name == self.end_to_end.name:
            return self.end_to_end
        return find_named(self.rows, name)

    def to_dict(self) -> dict:
        return {"hosts": [dict(h.__dict__, how=self.how(h.name)) for h in self.hosts], "here": self.here,
                "here_class": self.here_class, "rows": [r.to_dict() for r in self.rows],
                "end_to_end": self.end_to_end.to_dict() if self.end_to_end is not None else None}

    def __str__(self) -> str:
        names = [h.name for h in self.hosts]
        lines = [f"Cross-host (PT2E, torch.compile int8 program): output elements differing from the bytes torch gave "
                 f"on this host (oneDNN class {self.here_class})"]
        body = []
        rows = self.rows + ([self.end_to_end] if self.end_to_end is not None else [])
        for r in rows:
            body.append([r.name, r.detail, str(r.numel)] + ["n/a" if n in r.errors else str(r.differing.get(n, 0))
                                                            for n in names])
        cols = ["op", "type", "elements"] + names
        widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(cols)]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        lines += [fmt.format(*cols), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body]
        for h in self.hosts:
            lines.append(f"  {h.name}: {h.label} ({self.how(h.name)})")
        if self.end_to_end is not None:
            lines.append("  end to end: formula for every column (qref's int8 ops of that class inside this host's "
                         "compiled program; the float code between them is this host's inductor code)")
        for h in self.hosts:
            if any(r.differing.get(h.name) for r in rows):
                lines.append(f"why {h.name} differs: {_WHY.get(h.isa, describe_class(h.isa))}")
                lines += [f"  {r.name}: {r.why[h.name]}" for r in rows if r.differing.get(h.name) and h.name in r.why]
        errs: dict = {}
        for r in rows:
            for n, msg in r.errors.items():
                errs.setdefault((n, msg), []).append(r.name)
        grouped: dict = {}
        for (n, msg), where in errs.items():
            grouped.setdefault((msg, tuple(where)), []).append(n)
        for (msg, where), cols in grouped.items():
            shown = "every op" if len(where) == len(self.rows) > 1 else ", ".join(where)
            lines.append(f"n/a: {', '.join(cols)} for {shown}: {msg}")
        return "\n".join(lines)


def _differing(a: Any, ref: Any) -> int:
    if tuple(a.shape) != tuple(ref.shape) or a.dtype != ref.dtype:
        return int(ref.numel())
    return int(np.count_nonzero(_bits(a) != _bits(ref)))


def _column_of(cls: str) -> str:
    cls = _SAME_COLUMN.get(cls, cls)
    for h in HOSTS:
        if h.isa == cls:
            return h.name
    return ""


def _not_computed(op: Any, cls: str) -> Optional[str]:
    """Why qref gives no bytes for ``op`` on ``cls`` before running it, or None."""
    if cls in _UNSUPPORTED_CLASSES:
        return f"oneDNN's {cls} kernels: their int8 arithmetic is not reproduced by qref"
    if cls == "amx" and op.kind.startswith("qconv"):
        k = op.weight.shape[2:]
        if all(int(v) == 1 for v in k) and not any(op.padding) and int(op.x.shape[0]) == 1:
            return ("brgconv_1x1 on one image: oneDNN's AMX build applies a combined scale with one thread and "
                    "separate scales with several, so the bytes depend on that host's thread count")
    return None


def _compute(op: Any, cls: str, combined: Optional[bool] = None) -> Any:
    with warnings.catch_warnings():
        # the amx class warns once where it assumes a kernel oneDNN picks by heuristics: the column's label says so
        warnings.simplefilter("ignore", RuntimeWarning)
        return run_op(op, cls, combined)


def _sums(op: Any, cls: str, cache: dict) -> tuple:
    """(A, plan) of ``op`` on ``cls``, computed once per op and class."""
    if cls not in cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            A, _, inter = compensated_sum(op, cls)
        cache[cls] = (A, inter.plan)
    return cache[cls]


def _op_why(op: Any, cls: str, host: str, out: Any, cache: dict) -> str:
    """What makes ``cls``'s bytes differ from this host's on this op: how many compensated sums A differ
    (int16 pair saturation, float zero-point compensation), and how many outputs the scale order alone changes."""
    parts = []
    if host in _UNSUPPORTED_CLASSES or host not in _WHY:
        return "this host's class is not reproduced by qref: compared with torch's own output only"
    A_c, p_c = _sums(op, cls, cache)
    A_h, p_h = _sums(op, host, cache)
    k = int(np.count_nonzero(A_c != A_h))
    if k:
        cause = []
        if p_c.saturates or p_h.saturates:
            cause.append("int16 pair saturation on " + (cls if p_c.saturates else host))
        if p_c.float_compensation != p_h.float_compensation:
            cause.append("float zero-point compensation on " + (cls if p_c.float_compensation else host))
        parts.append(f"compensated int32 sum A differs at {k} of {A_c.size} outputs ({', '.join(cause) or 'kernel'})")
    else:
        dw = op.kind.startswith("qconv") and op.groups > 1 and op.weight.shape[1] == 1
        parts.append("sums A equal" + (" (depthwise: every class sums exactly)" if dw else ""))
    if p_c.combined_scale != p_h.combined_scale:
        m = _differing(out, _compute(op, cls, p_h.combined_scale))
        mine = "one combined scale f32(x_scale*w_scale)" if p_c.combined_scale else "separate scales"
        parts.append(f"{mine} (this host: {'combined' if p_h.combined_scale else 'separate'}) alone changes {m} outputs")
    if op.output_dtype is not None and "float" in str(op.output_dtype):
        parts.append(f"{str(op.output_dtype).replace('torch.', '')} output: every last-bit difference counts")
    return "; ".join(parts)


def _float_ops(prog: Any) -> list:
    """Float ops inductor generates code for between the int8 ops (layer_norm, mean, ...), besides quantize /
    dequantize: their vectorized code depends on the host's vector width."""
    if prog.graph is None:
        return []
    return [getattr(n.target, "__name__", str(n.target)) for n in prog.graph.nodes
            if _region(n) and _qd_name(n) is None and "inductor_force_stride_order" not in str(n.target)]


def _check_inputs(inputs: tuple) -> None:
    import torch

    if not inputs:
        raise ValueError("runtimes: give the model's inputs after the model (got none)")
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"runtimes: inputs[{i}] must be a torch.Tensor for a PT2E model, got {type(x).__name__}")


def hosts(converted: Any, *inputs: Any, keep_outputs: bool = False, _program: Any = None) -> Pt2eHostsReport:
    """The cross-host report of a converted PT2E model (see module doc). ``keep_outputs``: keep each column's
    tensor per op and end to end in ``row.outputs`` (memory: one output per column per op)."""
    import torch

    _check_inputs(inputs)
    prog = _program if _program is not None else compile_model(converted, inputs)
    here_class = resolve_class("auto")
    here = _column_of(here_class)
    rep = Pt2eHostsReport(HOSTS, here, here_class)
    for i, (node, call) in enumerate(_pairs(prog)):
        op = parse_call(call.name, call.args)
        name = node.name if node is not None else call.name
        row = HostRow(f"{i}:{name}", call.name, describe(op), int(call.output.numel()))
        sums: dict = {}
        for h in HOSTS:
            why = _not_computed(op, h.isa)
            if why is None:
                try:
                    out = _compute(op, h.isa)
                except (NotReproduced, OneDNNNotSupportedError) as e:
                    why = str(e)
            if why is not None:
                row.errors[h.name] = why
                continue
            row.differing[h.name] = _differing(out, call.output)
            if keep_outputs:
                row.outputs[h.name] = out
            if row.differing[h.name]:
                row.why[h.name] = (_op_why(op, h.isa, here_class, out, sums) if h.name != here else
                                   "qref's formula for this host's class does not give the bytes torch gave here "
                                   "(qref.check(model, x, compile=True) shows the op as MISMATCH)")
        rep.rows.append(row)
    ref_flat, _ = torch.utils._pytree.tree_flatten(prog.output)
    e2e = HostRow("end to end", "output", "output", sum(int(t.numel()) for t in ref_flat))
    floats = _float_ops(prog)
    for h in HOSTS:
        missing = [r.name for r in rep.rows if h.name in r.errors]
        if missing:
            e2e.errors[h.name] = ("int8 ops not reproduced on this class: " +
                                  ("all" if len(missing) == len(rep.rows) > 1 else ", ".join(missing)))
            continue
        if floats and h.name != here:
            e2e.errors[h.name] = (f"inductor's float code for {', '.join(sorted(set(floats)))} is vectorized for the "
                                  f"host it runs on; this report runs this host's code, not that host's")
            continue

        def compute(name: str, args: list, cls: str = h.isa) -> Any:
            return _compute(parse_call(name, args), cls)

        out = run_with(prog, inputs, compute)
        flat, _ = torch.utils._pytree.tree_flatten(out)
        e2e.differing[h.name] = sum(_differing(a, b) for a, b in zip(flat, ref_flat))
        if keep_outputs:
            e2e.outputs[h.name] = out
        if e2e.differing[h.name]:
            ops_diff = [r.name for r in rep.rows if r.differing.get(h.name)]
            e2e.why[h.name] = ("differences of " + (", ".join(ops_diff) if ops_diff else "no op on this host's inputs")
                               + ", carried through the program (each op then sees that class's inputs)")
    rep.end_to_end = e2e
    return rep
