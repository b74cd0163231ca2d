"""qref.runtimes: which bytes each runtime gives for a quantized model's layers.

``runtimes(model, *inputs)`` runs the model once, reads every conv / linear layer's integer
parameters (``qref.from_torch``) and recomputes the layer, from the same recorded input, as each
registered runtime would: torch fbgemm on an AVX2 host and on an AVX512-VNNI host, torch's default
x86 engine on this host, torch's qnnpack. Each row counts the elements that differ from the first
runtime and says why. ``RUNTIMES`` is a registry: ``register(name, label, how, fn)`` adds a
column, ``fn(params, qx) -> uint8 array`` (e.g. an ONNX Runtime engine); ``how`` says whether the
bytes come from running that runtime here or from its formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from .check import _capture, _prepare, _shape, _table, _to_uint8
from .common.validate import check_inputs


@dataclass(frozen=True)
class Runtime:
    name: str
    label: str
    how: str  # "formula" (qref's arithmetic of that runtime) or "run here"
    fn: Callable  # (params, qx) -> output (quint8 tensor or uint8 array)


def _engine(engine: str, isa: str) -> Callable:
    def fn(params: Any, qx: Any) -> Any:
        return replace(params, engine=engine, onednn_kernel="")(qx, isa=isa)

    return fn


RUNTIMES: list = [
    Runtime("fbgemm-vnni", "torch fbgemm, AVX512-VNNI host", "formula", _engine("fbgemm", "vnni")),
    Runtime("fbgemm-avx2", "torch fbgemm, AVX2 host", "formula", _engine("fbgemm", "avx2")),
    Runtime("x86", "torch x86 engine, this host", "formula", _engine("x86", "auto")),
    Runtime("qnnpack", "torch qnnpack (any x86 host)", "formula", _engine("qnnpack", "auto")),
]


def register(name: str, label: str, how: str, fn: Callable) -> None:
    """Add (or replace) a runtime column: ``fn(params, qx)`` gives that runtime's output bytes."""
    RUNTIMES[:] = [r for r in RUNTIMES if r.name != name] + [Runtime(name, label, how, fn)]


_WHY = {
    "fbgemm-avx2": "AVX2's vpmaddubsw saturates int16 pair sums (VNNI does not)",
    "x86": "the x86 engine runs oneDNN here (its own float requantization order)",
    "qnnpack": "qnnpack quantizes the bias to int32 (fbgemm adds it in float) and multiplies by "
               "f32(w_s*x_s)*f32(1/y_s) (fbgemm divides)",
}


@dataclass
class RuntimeRow:
    name: str
    type: str
    output_shape: Any
    numel: int = 0
    differing: dict = field(default_factory=dict)  # runtime name -> elements differing from the first runtime
    errors: dict = field(default_factory=dict)  # runtime name -> why it was not computed


@dataclass
class RuntimeReport:
    runtimes: list
    rows: list

    def __str__(self) -> str:
        base = self.runtimes[0]
        lines = [f"Cross-runtime: output elements differing from {base.label}, same integer parameters"]
        cols = ["layer", "type", "elements"] + [r.name for r in self.runtimes[1:]]
        body = []
        for row in self.rows:
            body.append((row.name, row.type.split(".")[-1], str(row.numel))
                        + tuple(row.errors.get(r.name, "-")[:12] if r.name in row.errors
                                else str(row.differing.get(r.name, 0)) for r in self.runtimes[1:]))
        lines += _table(body, cols)
        for r in self.runtimes:
            lines.append(f"  {r.name}: {r.label} ({r.how})")
        for r in self.runtimes[1:]:
            n = sum(row.differing.get(r.name, 0) for row in self.rows)
            if n and r.name in _WHY:
                lines.append(f"why {r.name} differs: {_WHY[r.name]}")
        return "\n".join(lines)


def runtimes(model: Any, *inputs: Any) -> RuntimeReport:
    """Recompute every conv / linear layer of ``model`` as each registered runtime would (see module doc)."""
    if not hasattr(model, "named_modules") or not callable(model):
        raise TypeError(f"runtimes: model must be a torch.nn.Module, got {type(model).__name__}")
    check_inputs("runtimes", inputs)
    rts = list(RUNTIMES)
    rows = []
    for call in _capture(model, inputs):
        runner, _reason = _prepare(call)
        if runner is None or not hasattr(runner, "engine") or not call.inputs:
            continue
        row = RuntimeRow(call.name, call.key, _shape(call.output))
        outs = {}
        for r in rts:
            try:
                outs[r.name] = _to_uint8(r.fn(runner, call.inputs[0]))
            except Exception as e:  # noqa: BLE001 - a runtime that cannot run this layer is reported
                row.errors[r.name] = f"{type(e).__name__}: {e}"
        ref = outs.get(rts[0].name)
        if ref is None:
            continue
        row.numel = int(ref.size)
        for name, o in outs.items():
            if o is not None and name != rts[0].name:
                row.differing[name] = int(np.count_nonzero(o != ref)) if o.shape == ref.shape else int(ref.size)
        rows.append(row)
    return RuntimeReport(rts, rows)


# ``qref.runtimes`` is the function (it shadows this submodule's name in the package), so the registry is
# reachable from it: ``qref.runtimes.register(name, label, how, fn)``, ``qref.runtimes.RUNTIMES``.
runtimes.register = register  # type: ignore[attr-defined]
runtimes.RUNTIMES = RUNTIMES  # type: ignore[attr-defined]
