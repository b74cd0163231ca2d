"""qref.check and qref.portability: is a whole quantized model reproducible, and will it give
the same bytes on another CPU?

``check(model, *inputs)`` runs the model once with forward hooks on every quantized layer,
recomputes each captured call with qref and compares the uint8 outputs with ``==``.
``portability(model, *inputs)`` recomputes the same calls as an AVX2 host's and as an
AVX512-VNNI host's fbgemm would (``isa="avx2"`` vs ``"vnni"``) and lists the layers whose bytes
differ, how many elements, and why.

Which layers are verified is table-driven: ``VERIFIERS`` maps a quantized module type
(``"quantized.Conv2d"``, ``"intrinsic.quantized.ConvReLU2d"``, ...) to a ``prepare(module)``
function returning a runner ``runner(*inputs, isa=..., return_intermediates=False)``. Most
entries use ``qref.from_torch``, so a module type that the torch bridge learns to convert is
verified with no change here; a new kind of layer is one line:
``VERIFIERS["quantized.Foo"] = my_prepare``. ``prepare`` raises
``qref.torch_bridge.UnsupportedModuleError`` with the reason when qref cannot reproduce a module
(e.g. oneDNN-packed weights); such layers, and quantized layers with no entry, are reported by
name and reason and make ``report.ok`` False.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Callable, Optional

import numpy as np

from . import models as _models
from . import onnx as _onnx
from . import pt2e as _pt2e
from .bridge.from_torch import from_torch
from .bridge.modules import UnsupportedModuleError
from .bridge.onednn_verbose import _with_onednn_kernel, onednn_lock
from .common.errors import UnsupportedOpError
from .common.isa import ISAS, torch_isa
from .common.records import find_named
from .common.validate import check_inputs, is_torch_tensor
from .engines.fbgemm.conv2d import conv_plan
from .engines.onednn.nd import _tap_slices
from .layers.conv2d import quantize
from .plot import plot_layers
from .routing import linear_runs_onednn, x86_picks_onednn

# ---------------------------------------------------------------------------- the registry


def module_key(module: Any) -> str:
    """A quantized module's type as ``"<namespace>.<Class>"`` with the namespace taken from
    ``torch.ao.nn``: ``"quantized.Conv2d"``, ``"intrinsic.quantized.ConvReLU2d"``,
    ``"quantized.dynamic.Linear"``; other modules give their plain class name."""
    cls = type(module)
    mod = cls.__module__
    m = re.match(r"torch\.ao\.nn\.(.*?)(?:\.modules(?:\..*)?)?$", mod)
    if m:
        return f"{m.group(1)}.{cls.__name__}"
    return cls.__name__


def is_quantized_module(key: str) -> bool:
    return key.startswith(("quantized.", "intrinsic.quantized.")) and not key.startswith("quantized.reference.")


def via_from_torch(module: Any) -> Callable:
    """The default verifier: ``qref.from_torch(module)`` gives a params object whose call runs
    the layer (``params(qx, isa=..., return_intermediates=...)``)."""
    return from_torch(module)


class _QuantizeRunner:
    """QuantStub after convert (``quantized.Quantize``): float -> quint8 with qref.quantize."""

    def __init__(self, module: Any) -> None:
        import torch

        if module.dtype != torch.quint8:
            raise UnsupportedModuleError(f"Quantize to {module.dtype} is not supported (quint8 only)")
        self.scale = float(module.scale)
        self.zero_point = int(module.zero_point)

    def __call__(self, x: Any, isa: str = "auto", return_intermediates: bool = False) -> Any:
        if return_intermediates:
            raise TypeError("quantize has no intermediates")
        return quantize(x.detach().contiguous(), self.scale, self.zero_point)


def _unsupported(reason: str) -> Callable:
    def prepare(module: Any) -> Callable:
        raise UnsupportedModuleError(reason)

    return prepare


# Every quantized compute layer torch has; those the torch bridge cannot convert yet are
# reported with from_torch's own reason. Add a type with one line.
VERIFIERS: dict = {
    "quantized.Quantize": _QuantizeRunner,
    **{f"quantized.{n}": via_from_torch for n in (
        "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Linear")},
    **{f"intrinsic.quantized.{n}": via_from_torch for n in (
        "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "LinearReLU", "ConvAdd2d", "ConvAddReLU2d", "BNReLU2d",
        "BNReLU3d", "LinearLeakyReLU", "LinearTanh")},
    "quantized.QFunctional": _unsupported(
        "quantized add/cat/mul (QFunctional) are not modelled by qref; their outputs are not verified"),
}
# Plumbing that computes nothing qref models: not reported.
IGNORED = {"quantized.DeQuantize", "quantized.Dropout", "quantized.FloatFunctional",
           "quantized.FXFloatFunctional"}


def register(key: str, prepare: Callable = via_from_torch) -> None:
    """Verify modules of type ``key`` (see ``module_key``) with ``prepare(module) -> runner``."""
    VERIFIERS[key] = prepare


# ---------------------------------------------------------------------------- capture


@dataclass(eq=False)
class _Call:
    name: str
    key: str
    module: Any
    inputs: tuple
    output: Any
    qref_out: Any = None  # qref's result (reused by the end-to-end run where its inputs are the same bytes)


def _capture(model: Any, inputs: tuple) -> list:
    """Run the model once; return every call of a quantized layer, in execution order."""
    import torch

    calls: list = []
    handles = []
    seen: dict = {}
    # The hooks live on the (shared) modules: another thread running the same model meanwhile
    # (its own check, or plain inference) fires them too. Only this thread's calls are recorded.
    me = threading.get_ident()

    def hook_for(name: str, key: str):
        def hook(mod, args, out):
            if threading.get_ident() != me:
                return
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name}[call {seen[name]}]"
            # Copies: a later in-place op (ReLU(inplace=True), add_) would change the live tensors
            # before qref recomputes them.
            def snap(t):
                return t.clone() if isinstance(t, torch.Tensor) else t

            calls.append(_Call(label, key, mod, tuple(snap(a) for a in args), snap(out)))

        return hook

    for name, mod in model.named_modules():
        key = module_key(mod)
        if key in IGNORED or not (key in VERIFIERS or is_quantized_module(key)):
            continue
        handles.append(mod.register_forward_hook(hook_for(name or "(model)", key)))
    try:
        with torch.no_grad(), onednn_lock():
            if isinstance(model, torch.fx.GraphModule):
                _FxRecorder(model, calls).run(*inputs)
            else:
                model(*inputs)
    finally:
        for h in handles:
            h.remove()
    # QFunctional's add/cat/mul are methods, not forward(): hooks never see them, but they
    # are quantized arithmetic qref does not verify, so they are listed rather than skipped.
    for name, mod in model.named_modules():
        if module_key(mod) == "quantized.QFunctional":
            calls.append(_Call(name, "quantized.QFunctional", mod, (), None))
    return calls


def _is_quantized_function(target: Any) -> bool:
    import torch

    if target is torch.quantize_per_tensor:
        return True
    name = getattr(target, "_qualified_op_name", "") or ""
    return name.startswith("quantized::") or str(target).startswith("quantized.")


def _fx_recorder_class():
    import torch

    class Recorder(torch.fx.Interpreter):
        """Runs an FX-converted model node by node (submodules still fire their hooks) and records
        the quantized ops it calls as functions, which no hook sees: quantize_per_tensor is verified
        like eager mode's Quantize module; the others (quantized.add_relu, cat, ...) are listed as
        not verified, so an FX model never reports OK where its eager twin would not."""

        def __init__(self, module: Any, calls: list) -> None:
            super().__init__(module)
            self.calls = calls

        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if n.op == "call_function" and _is_quantized_function(n.target):
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                snap = lambda t: t.clone() if isinstance(t, torch.Tensor) else t  # noqa: E731
                if n.target is torch.quantize_per_tensor:
                    x, scale, zp, dtype = (list(args) + [kwargs.get(k) for k in ("scale", "zero_point", "dtype")])[:4]
                    stub = SimpleNamespace(scale=float(scale), zero_point=int(zp), dtype=dtype)
                    self.calls.append(_Call(n.name, "quantized.Quantize", stub, (snap(x),), snap(out)))
                else:
                    self.calls.append(_Call(n.name, f"function {n.target}", None, (), snap(out)))
            return out

    return Recorder


def _FxRecorder(model: Any, calls: list) -> Any:
    return _fx_recorder_class()(model, calls)


def _to_uint8(t: Any) -> Optional[np.ndarray]:
    if is_torch_tensor(t):
        if t.is_quantized:
            return t.int_repr().numpy()
        return None
    if isinstance(t, np.ndarray) and t.dtype == np.uint8:
        return t
    return None


def _shape(t: Any) -> Optional[tuple]:
    return tuple(int(v) for v in t.shape) if hasattr(t, "shape") else None


def _progress(seq: list, desc: str):
    """tqdm on a TTY for long checks; plain iteration otherwise (tqdm is optional)."""
    if len(seq) < 4 or not sys.stderr.isatty():
        return seq
    try:
        from tqdm import tqdm
    except ImportError:
        return seq
    return tqdm(seq, desc=desc, unit="layer", file=sys.stderr, leave=False)


def _prepare(call: _Call):
    """(runner, reason): the runner, or None and why qref cannot reproduce the layer."""
    prep = VERIFIERS.get(call.key)
    if prep is None:
        return None, f"{call.key} is not supported by qref yet (no verifier registered)"
    try:
        # once per module and weights (qref.models.PREPARED: keyed by the module's packed-params objects)
        return _models.prepared(call.module, prep, key=("verifier", prep)), ""
    except UnsupportedModuleError as e:
        return None, str(e)


def _runs_onednn(runner: Any, isa: str) -> bool:
    """Whether the layer of a params object runs oneDNN on the machine `isa` names (qref.routing)."""
    engine = getattr(runner, "engine", "fbgemm")
    if engine != "x86":
        return engine == "onednn"
    if getattr(runner, "kind", "") == "linear":
        return linear_runs_onednn(engine)
    symmetric = not bool(np.any(getattr(runner, "weight_zero_point", 0)))
    return symmetric and x86_picks_onednn(int(getattr(runner, "groups", 1)), isa,
                                          tuple(getattr(runner, "output_padding", ()) or ()))


def _path_of(runner: Any, inp: Any, isa: str) -> str:
    if _runs_onednn(runner, isa):
        return "oneDNN"
    if hasattr(runner, "plan") and not hasattr(runner, "conv_kwargs"):  # qref.bridge.layers params
        try:
            return str(runner.plan(tuple(inp.shape), isa).path)
        except Exception:  # noqa: BLE001  (a path label is informative only)
            return ""
    try:
        w = runner.weight
        return conv_plan(tuple(inp.shape), tuple(w.shape), runner.stride, runner.padding, runner.dilation,
                         runner.groups, isa).path
    except Exception:
        return ""


# ---------------------------------------------------------------------------- check


@dataclass
class LayerResult:
    """One captured call of a quantized layer, compared with qref."""

    name: str
    type: str
    input_shape: Optional[tuple]
    output_shape: Optional[tuple]
    status: str  # "ok", "MISMATCH", "unsupported"
    numel: int = 0
    mismatches: int = 0
    max_abs_diff: int = 0
    first_mismatch: Optional[tuple] = None
    torch_value: Optional[int] = None  # at the first mismatch
    qref_value: Optional[int] = None
    path: str = ""
    reason: str = ""
    diff: Optional[np.ndarray] = field(default=None, repr=False)  # qref - torch (int16), mismatching only

    @property
    def verified(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "type", "input_shape", "output_shape", "status", "numel",
                                           "mismatches", "max_abs_diff", "first_mismatch", "torch_value",
                                           "qref_value", "path", "reason")}
        return d


def _table(rows: list, cols: list) -> list:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    out = [fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return out


@dataclass
class Report:
    """The result of ``qref.check``: one row per captured quantized layer call."""

    layers: list
    isa: str
    torch_isa: str = ""
    end_to_end: Optional[LayerResult] = None  # the whole model run by qref (qref.run) vs torch

    @property
    def ok(self) -> bool:
        """True only if there was at least one op, every one was verified bit-exact, and (when
        run) the end-to-end output equals torch's."""
        return (bool(self.layers) and all(r.verified for r in self.layers)
                and (self.end_to_end is None or self.end_to_end.verified))

    @property
    def mismatching(self) -> list:
        return [r for r in self.layers if r.status == "MISMATCH"]

    @property
    def unsupported(self) -> list:
        return [r for r in self.layers if r.status == "unsupported"]

    @property
    def torch_wrong(self) -> list:
        """Layers where torch's own output is known to be wrong (qref computes the correct result)."""
        return [r for r in self.layers if r.status == "TORCH_WRONG"]

    def __getitem__(self, name: str) -> LayerResult:
        return find_named(self.layers, name)

    def to_dict(self) -> dict:
        return dict(ok=self.ok, isa=self.isa, layers=[r.to_dict() for r in self.layers],
                    end_to_end=None if self.end_to_end is None else self.end_to_end.to_dict())

    def __str__(self) -> str:
        rows = []
        for r in self.layers:
            first = "" if r.first_mismatch is None else (
                f"{r.first_mismatch} qref {r.qref_value} torch {r.torch_value}")
            rows.append((r.name, r.type.split(".")[-1], "x".join(map(str, r.output_shape or ())) or "-", r.path,
                         r.status, f"{r.mismatches}/{r.numel}" if r.status != "unsupported" else "-",
                         str(r.max_abs_diff) if r.status != "unsupported" else "-", first))
        lines = [f"qref check (isa={self.isa}): {len(self.layers)} quantized op call(s)"]
        lines += _table(rows, ["op", "type", "output", "path", "status", "mismatches", "max|diff|",
                               "first mismatch (n,c,h,w)"])
        for r in self.unsupported:
            lines.append(f"  {r.name}: not verified: {r.reason}")
        for r in self.torch_wrong:
            lines.append(f"  {r.name}: {r.reason}")
        for r in self.mismatching:
            if r.reason:
                lines.append(f"  {r.name}: {r.reason}")
        e = self.end_to_end
        if e is not None:
            what = {"ok": "bit-exact", "MISMATCH": f"MISMATCH ({e.mismatches}/{e.numel}) {e.reason}"}.get(
                e.status, f"not run: {e.reason}")
            lines.append(f"end to end (the whole model run by qref.run vs torch): {what}")
        verified = sum(r.verified for r in self.layers)
        if self.ok:
            lines.append(f"OK: all {verified} quantized op calls bit-exact"
                         + (", and the model's output end to end" if e is not None else ""))
        elif not self.layers:
            lines.append("NOT OK: no quantized ops were called (is the model converted?)")
        else:
            lines.append(f"NOT OK: {verified} of {len(self.layers)} quantized op calls verified bit-exact, "
                         f"{len(self.mismatching)} mismatching, {len(self.unsupported)} not verifiable"
                         + ("" if e is None or e.verified else ", end to end not bit-exact"))
        return "\n".join(lines)

    def plot(self, path: str, portability: Optional["PortabilityReport"] = None) -> str:
        return plot_layers(path, check=self, portability=portability)


def check(model: Any, *inputs: Any, isa: str = "auto", end_to_end: bool = True,
          threads: Optional[int] = None, compile: bool = False) -> Report:
    """Run ``model(*inputs)`` once under torch and recompute every op on quantized tensors with
    qref from torch's own inputs (one row per op call: conv/linear by the module that issued them,
    ATen's quantized ops with ``qref.engines.aten``); then, with ``end_to_end=True`` (isa="auto"),
    run the whole model with qref (``qref.run``) and compare its output with torch's
    (``report.end_to_end``).

    Ops are seen through torch's dispatcher (qref.models), so functional calls and FX graph nodes
    get rows too; an op qref does not reproduce gets a "not verified" row and ``report.ok`` is
    False. ``isa="avx2"`` / ``"vnni"`` recomputes the conv/linear rows as that host's torch would.
    """
    if _onnx.is_onnx_model(model):  # an ONNX model: qref.onnx.check(model, feeds) (docs/onnxruntime.md)
        return _onnx.check(model, *inputs, **({} if isa == "auto" else {"host": isa}))
    if compile or _pt2e.is_pt2e_model(model):  # torchao PT2E: docs/pt2e.md
        return _pt2e.check(model, *inputs, compile=compile, isa=isa)
    if isa not in ISAS:
        raise ValueError(f"check: isa={isa!r} is not valid (valid: {', '.join(map(repr, ISAS))})")
    if not hasattr(model, "named_modules") or not callable(model):
        raise TypeError(f"check: model must be a torch.nn.Module, got {type(model).__name__}")
    _models._validate_model("check", model, inputs)
    rows: list = []

    def on_call(c: Any) -> None:
        if c.kind == "module":
            key = module_key(c.module) if c.module is not None else c.op
            call = _Call(c.name, key, c.module, tuple(c.inputs), c.output)
            rows.append(_check_call(call, isa))
            c.qref = call.qref_out
        else:
            rows.append(_op_row(c))

    memo: list = []
    e2e = None
    with _models.same_bytes_cache():
        expected = _models.capture(model, inputs, on_call, isa, threads, memo=memo if end_to_end else None)
        if end_to_end and isa == "auto":
            e2e = _end_to_end(model, inputs, expected, threads, memo)
    return Report(rows, isa, torch_isa().gemm_isa, end_to_end=e2e)


def _op_row(c: Any) -> LayerResult:
    """A row for an ATen/quantized op: qref's result (computed from torch's inputs) vs torch's."""
    inp = c.inputs[0] if c.inputs else None
    row = LayerResult(c.name, c.op, _shape(inp), _shape(c.output), "unsupported", path="ATen")
    if c.error:
        row.reason = c.error
        return row
    cmp = _models.compare(c.qref, c.output)
    _fill(row, cmp)
    return row


def _fill(row: LayerResult, cmp: Any) -> None:
    row.numel = int(cmp.numel)
    row.mismatches = int(cmp.mismatches)
    row.status = "ok" if cmp.equal else "MISMATCH"
    if not cmp.equal:
        row.reason = cmp.reason
        row.first_mismatch = cmp.first
        row.torch_value, row.qref_value = cmp.torch_value, cmp.qref_value
        row.max_abs_diff = int(cmp.max_abs_diff)
        row.diff = cmp.diff


def _end_to_end(model: Any, inputs: tuple, expected: Any, threads: Optional[int], memo: list) -> LayerResult:
    row = LayerResult("(end to end)", "qref.run", None, _shape(expected), "unsupported", path="qref")
    try:
        got = _models.run(model, *inputs, threads=threads, _memo=memo)
    except UnsupportedOpError as e:
        row.reason = str(e).split("\n\nWhile executing")[0]  # without the FX interpreter's note
        return row
    _fill(row, _models.compare(got, expected))
    return row


def _check_call(call: _Call, isa: str) -> LayerResult:
    inp = call.inputs[0] if call.inputs else None
    row = LayerResult(call.name, call.key, _shape(inp), _shape(call.output), "unsupported")
    runner, reason = _prepare(call)
    if runner is None:
        row.reason = reason
        return row
    prepared = runner  # cached per module and weights: what runs below follows from it, the shape and isa
    if not (is_torch_tensor(call.output) and call.output.is_quantized):
        row.reason = f"output is {type(call.output).__name__}, not a quint8 tensor"
        return row
    if isa != "auto" and getattr(runner, "engine", "fbgemm") == "onednn":
        # Another host's torch: as portability() does, assume the default "x86" engine, which
        # prepack routes to fbgemm on an AVX2 host and to oneDNN on a VNNI one (docs/numerics.md §1).
        runner = _with_engine(runner, "x86")
    elif getattr(runner, "engine", "fbgemm") == "onednn" and hasattr(runner, "onednn_kernel") and inp is not None:
        # This host's torch: oneDNN picks some kernels by performance heuristics qref's shape rules
        # cannot see (e.g. its gemm conv for small grouped convs); ask oneDNN which one it runs.
        base = runner
        key = ("onednn-kernel", id(base), tuple(inp.shape), inp.q_scale(), inp.q_zero_point())
        runner = _models.PREPARED.get(call.module, key, lambda: _with_onednn_kernel(base, call.module, inp))
    try:
        call.qref_out = runner(*call.inputs, isa=isa)
        if _models.same_bytes(call.qref_out, call.output):  # the usual case: equal, no diff to compute
            # The kernel path depends only on the prepared params, the input shape and isa: found once.
            row.path = _models.PREPARED.get(call.module, ("path", id(prepared), _shape(inp), isa),
                                            lambda: _path_of(runner, inp, isa))
            row.numel = int(call.output.numel())
            row.status = "ok"
            return row
        got = _to_uint8(call.qref_out)
        expected = _to_uint8(call.output)
    except (UnsupportedModuleError, NotImplementedError) as e:
        row.reason = str(e)
        return row
    row.path = _path_of(runner, inp, isa)
    row.numel = int(expected.size)
    if got is None or got.shape != expected.shape:
        row.status = "MISMATCH"
        row.reason = f"qref output shape {None if got is None else got.shape} vs torch {expected.shape}"
        row.mismatches = row.numel
        return row
    d = got.astype(np.int16) - expected.astype(np.int16)
    bad = np.argwhere(d != 0)
    row.mismatches = int(len(bad))
    row.status = "ok" if len(bad) == 0 else "MISMATCH"
    if len(bad) and inp is not None and hasattr(runner, "known_torch_defect"):
        # qref computes the correct result; where fbgemm is known to be wrong for this layer and
        # input (docs/numerics.md §4.2, §4.5), say so instead of reporting a qref mismatch.
        try:
            why = runner.known_torch_defect(tuple(inp.shape), isa=isa)
        except Exception:  # noqa: BLE001 - a defect check must never hide the comparison itself
            why = None
        if why:
            row.status = "TORCH_WRONG"
            row.reason = f"torch is wrong here: {why}"
    if (len(bad) and row.status == "MISMATCH" and inp is not None and isa == "auto"
            and getattr(runner, "engine", "fbgemm") == "onednn"):
        why = _onednn_defect(call.module, inp, got, expected, bad)
        if why:
            row.status = "TORCH_WRONG"
            row.reason = f"torch is wrong here: {why}"
    if len(bad):
        idx = tuple(int(v) for v in bad[0])
        row.first_mismatch = idx
        row.max_abs_diff = int(np.abs(d).max())
        row.torch_value = int(expected[idx])
        row.qref_value = int(got[idx])
        row.diff = d
    return row


# ---------------------------------------------------------------------------- portability


@dataclass
class PortabilityRow:
    """One layer: its bytes on an AVX2 host vs an AVX512-VNNI host (both torch/fbgemm)."""

    name: str
    type: str
    output_shape: Optional[tuple]
    path_avx2: str = ""
    path_vnni: str = ""
    numel: int = 0
    differing: int = 0  # output bytes that differ
    saturated: Optional[int] = None  # elements whose accumulator differs (a saturated int16 pair)
    max_abs_diff: int = 0
    first_difference: Optional[tuple] = None
    why: str = ""
    diff: Optional[np.ndarray] = field(default=None, repr=False)  # avx2 - vnni (int16)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "type", "output_shape", "path_avx2", "path_vnni", "numel",
                                              "differing", "saturated", "max_abs_diff", "first_difference", "why")}


@dataclass
class PortabilityReport:
    """Which layers give different bytes on an AVX2 host than on an AVX512-VNNI host."""

    rows: list
    unsupported: list  # (name, type, reason)
    advice: list

    @property
    def portable(self) -> bool:
        return not self.unsupported and all(r.differing == 0 for r in self.rows)

    @property
    def differing(self) -> list:
        return [r for r in self.rows if r.differing]

    def to_dict(self) -> dict:
        return dict(portable=self.portable, rows=[r.to_dict() for r in self.rows],
                    unsupported=[dict(name=n, type=t, reason=w) for n, t, w in self.unsupported],
                    advice=list(self.advice))

    def __str__(self) -> str:
        rows = [(r.name, r.type.split(".")[-1], r.path_avx2 if r.path_avx2 == r.path_vnni else
                 f"{r.path_avx2} / {r.path_vnni}", f"{r.differing}/{r.numel}",
                 "-" if r.saturated is None else str(r.saturated), str(r.max_abs_diff), r.why)
                for r in self.rows]
        lines = ["Cross-machine: torch on an AVX2 host (isa='avx2') vs on an AVX512-VNNI host (isa='vnni')"]
        lines += _table(rows, ["layer", "type", "path", "bytes differing", "saturated acc", "max|diff|", "why"])
        for n, _t, w in self.unsupported:
            lines.append(f"  {n}: not compared: {w}")
        routed = [r.name for r in self.rows if r.path_vnni == "oneDNN"]
        if self.differing:
            lines.append(f"NOT PORTABLE: {len(self.differing)} layer(s) differ"
                         + (f", {len(self.unsupported)} not compared" if self.unsupported else ""))
        elif self.unsupported:
            lines.append(f"UNKNOWN: no compared layer differs, but {len(self.unsupported)} layer(s) could not be "
                         f"compared")
        elif routed:
            lines.append(f"PORTABLE for this input: same bytes on both, but {', '.join(routed)} run different "
                         f"formulas on the two hosts (other inputs may differ)")
        else:
            lines.append("PORTABLE: same bytes on both")
        for a in self.advice:
            lines.append(f"advice: {a}")
        return "\n".join(lines)

    def plot(self, path: str) -> str:
        return plot_layers(path, portability=self)


def _intermediate_acc(runner: Any, inputs: tuple, isa: str) -> Optional[np.ndarray]:
    try:
        res = runner(*inputs, isa=isa, return_intermediates=True)
    except Exception:  # a layer kind without intermediates: no saturation count, bytes still compared
        return None
    return res[1].acc if isinstance(res, tuple) and hasattr(res[1], "acc") else None


def _float_reference(module: Any, qx: Any) -> Optional[np.ndarray]:
    """The layer computed in float32 from the dequantized input, weights and bias, quantized to the
    module's output: within a step of any correct integer requantization."""
    import torch
    import torch.nn.functional as F

    x = qx.dequantize()
    w = module.weight().dequantize()
    b = module.bias()
    if hasattr(module, "in_features"):
        y = F.linear(x, w, b)
    else:
        nd = len(module.kernel_size)
        pad = tuple(module.padding)
        pm = getattr(module, "padding_mode", "zeros")
        if pm != "zeros" and not module.transposed:
            x = F.pad(x, tuple(v for p in reversed(pad) for v in (p, p)), mode=pm)
            pad = (0,) * nd
        if module.transposed:
            y = getattr(F, f"conv_transpose{nd}d")(x, w, b, module.stride, pad, module.output_padding,
                                                   module.groups, module.dilation)
        else:
            y = getattr(F, f"conv{nd}d")(x, w, b, module.stride, pad, module.dilation, module.groups)
    if "ReLU" in type(module).__name__:
        y = torch.relu(y)
    return torch.quantize_per_tensor(y, float(module.scale), int(module.zero_point), torch.quint8).int_repr().numpy()


def _unreached_outputs(module: Any, shape: tuple) -> Optional[np.ndarray]:
    """For a transposed conv module: a boolean array over the output's spatial positions, True
    where no input pixel contributes (input i reaches output i*s - p + k*d). None otherwise."""
    if not getattr(module, "transposed", False):
        return None
    per_dim = []
    for n_in, s_, p_, d, k, op in zip(shape[2:], module.stride, module.padding, module.dilation, module.kernel_size,
                                      module.output_padding):
        n_out = (n_in - 1) * s_ - 2 * p_ + d * (k - 1) + op + 1
        hit = np.zeros(max(n_out, 0), bool)
        for t in range(k):
            sl = _tap_slices(t, n_in, n_out, s_, p_, d, True)
            if sl is not None:
                hit[sl[1]] = True
        per_dim.append(~hit)
    out = per_dim[0]
    for m in per_dim[1:]:
        out = out[..., None] | m  # unreached if unreached along any dimension
    return out


def _onednn_defect(module: Any, qx: Any, got: np.ndarray, expected: np.ndarray, bad: np.ndarray) -> Optional[str]:
    """Why a oneDNN layer's mismatch is torch's, measured: qref stays within one quantization step of
    the float computation everywhere while torch is 3 or more steps off where they differ. The
    requantization variants oneDNN's kernels differ by move an output by at most one step, so no
    correct oneDNN arithmetic is that far off; seen on torch 2.13 for brg_conv_fwd with one input
    channel per group where outputs read only padding, and brdgmm_dw 1x1 convs with padding."""
    unreached = _unreached_outputs(module, tuple(qx.shape))
    if unreached is not None and bool(unreached[tuple(bad.T)[2:]].all()):
        return (f"all {len(bad)} differing elements are outputs that no input pixel reaches (a transposed conv whose "
                f"stride exceeds its kernel span): their value is the bias alone, which qref gives, while torch/oneDNN "
                f"leaves them uninitialized (varying values; docs/onednn-layers.md)")
    try:
        ref = _float_reference(module, qx)
    except Exception:  # noqa: BLE001 - no float reference, no verdict; the mismatch stands
        return None
    if ref is None or ref.shape != got.shape:
        return None
    q_off = int(np.abs(got.astype(np.int16) - ref).max())
    sel = tuple(bad.T)
    t_off = int(np.abs(expected[sel].astype(np.int16) - ref[sel]).max())
    if q_off <= 1 and t_off >= 3:
        near = int((np.abs(expected[sel].astype(np.int16) - ref[sel]) <= 1).sum())
        return (f"torch/oneDNN's output is up to {t_off} quantization steps from the layer computed in float at the "
                f"{len(bad)} differing elements ({near} of them within one step), while qref's is within {q_off} "
                f"everywhere; no oneDNN requantization variant moves an output by more than one step, so these are "
                f"torch/oneDNN defects (docs/onednn-layers.md)")
    return None


def _with_engine(runner: Any, engine: str) -> Any:
    return replace(runner, engine=engine)


def portability(model: Any, *inputs: Any) -> PortabilityReport:
    """Run the model once and recompute every quantized layer as an AVX2 host's torch and as an
    AVX512-VNNI host's torch would (fbgemm engine); list the layers whose bytes differ."""
    if not hasattr(model, "named_modules") or not callable(model):
        raise TypeError(f"portability: model must be a torch.nn.Module, got {type(model).__name__}")
    check_inputs("portability", inputs)
    calls = _capture(model, inputs)
    rows, unsupported, advice = [], [], []
    onednn = False
    for call in _progress(calls, "qref portability"):
        runner, reason = _prepare(call)
        if runner is None:
            unsupported.append((call.name, call.key, reason))
            onednn |= "oneDNN" in reason
            continue
        inp = call.inputs[0] if call.inputs else None
        row = PortabilityRow(call.name, call.key, _shape(call.output))
        # Packed for oneDNN here (engine "x86" on this VNNI host): assume the default "x86" engine,
        # which prepack routes to fbgemm on an AVX2 host and to oneDNN on a VNNI one (docs/numerics.md §1).
        routed = getattr(runner, "engine", "fbgemm") == "onednn"
        r2 = _with_engine(runner, "x86") if routed else runner
        try:
            a2 = _to_uint8(r2(*call.inputs, isa="avx2"))
            vn = _to_uint8(r2(*call.inputs, isa="vnni"))
        except (UnsupportedModuleError, NotImplementedError, ValueError) as e:
            unsupported.append((call.name, call.key, str(e)))
            continue
        row.path_avx2, row.path_vnni = _path_of(r2, inp, "avx2"), _path_of(r2, inp, "vnni")
        if routed:
            onednn = True
            row.path_vnni = "oneDNN"
        if a2 is None or vn is None:
            rows.append(row)
            continue
        row.numel = int(a2.size)
        d = a2.astype(np.int16) - vn.astype(np.int16)
        bad = np.argwhere(d != 0)
        row.differing = int(len(bad))
        if row.differing:
            row.first_difference = tuple(int(v) for v in bad[0])
            row.max_abs_diff = int(np.abs(d).max())
            row.diff = d
        acc2 = None if routed else _intermediate_acc(runner, call.inputs, "avx2")
        accv = None if routed else _intermediate_acc(runner, call.inputs, "vnni")
        if acc2 is not None and accv is not None:
            row.saturated = int((acc2 != accv).sum())
        if routed:
            row.why = ("engine 'x86': fbgemm on an AVX2 host, oneDNN (a different requantization) on a VNNI "
                       "host" if row.differing else "engine 'x86' routes differently, but the bytes agree")
        elif row.differing:
            row.why = (f"int16 pair sums saturate on AVX2 (vpmaddubsw) but not with VNNI: {row.saturated} "
                       f"accumulators differ" if row.saturated else "AVX2 and VNNI arithmetic differ")
        elif row.path_avx2 == "depthwise":
            row.why = "depthwise saturates on every CPU: same bytes everywhere"
        elif row.saturated:
            row.why = f"{row.saturated} accumulators differ, but every output byte rounds the same"
        rows.append(row)
    if any(r.differing and r.path_vnni != "oneDNN" for r in rows):
        names = ", ".join(r.name for r in rows if r.differing and r.path_vnni != "oneDNN")
        advice.append(f"{names}: activations use the full 0..255 range, so a*w pair sums exceed int16 on AVX2 "
                      f"hosts. Quantize activations with reduce_range=True (7-bit, as "
                      f"torch.ao.quantization.get_default_qconfig('fbgemm') does) and these layers give the same "
                      f"bytes on every x86 CPU.")
    if onednn:
        advice.append("layers converted under the 'x86' engine (the default) run oneDNN on AVX512-VNNI Linux hosts "
                      "and fbgemm elsewhere: different formulas on different machines (and oneDNN's differs "
                      "between AMX and VNNI CPUs); convert under torch.backends.quantized.engine = 'fbgemm' for "
                      "one formula everywhere.")
    return PortabilityReport(rows, unsupported, advice)


# ``qref.check`` is the function (it shadows this submodule's name in the package), so the registry
# is reachable from it too: ``qref.check.register("quantized.Foo", prepare)``, ``qref.check.VERIFIERS``.
check.register = register  # type: ignore[attr-defined]
check.VERIFIERS = VERIFIERS  # type: ignore[attr-defined]
