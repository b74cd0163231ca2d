"""qref.runtimes: which bytes each runtime gives for a quantized model's layers.

``runtimes(model, *inputs)`` runs the model once, reads every conv / linear layer's integer
parameters (``qref.from_torch``) and recomputes the layer, from the same recorded input, as each
registered runtime would: torch fbgemm on an AVX2 host and on an AVX512-VNNI host, torch's default
x86 engine on this host, torch's qnnpack, and ONNX Runtime's CPU execution provider (MLAS) on an
AVX512-VNNI / AVX-VNNI host and on an AVX2 host. Each row counts the elements that differ from the
first runtime and says why. ``RUNTIMES`` is a registry: ``register(name, label, how, fn)`` adds a
column, ``fn(params, qx) -> uint8 array``; ``how`` says whether the bytes come from running that
runtime here or from its formula.

The ONNX Runtime columns take the operands an ORT user has after exporting the layer and
quantizing it with ``onnxruntime.quantization`` with the same integer parameters
(``ort_operands``: the QLinearConv / QGemm node's inputs, the bias as the int32 ORT's quantizer
writes) and compute the node with qref's MLAS engine (``ort_output``); numpy and qref's core
suffice, onnx / onnxruntime are never imported here.

A torchao PT2E model gets another report (``qref.pt2e.hosts``): torch.compile runs its int8 ops on oneDNN on
every x86 host, so its columns are oneDNN's CPU classes (``PT2E_HOSTS``), each op recomputed from torch's own
recorded inputs by ``qref.pt2e.ops.run_op`` for that class.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

import numpy as np

from .bridge.onednn_verbose import x86_engine_kernel
from .check import _capture, _prepare, _shape, _table, _to_uint8
from .common.onednn_isa import resolve_class
from .common.operands import check_quint8_activation
from .common.validate import check_inputs, check_int, check_scale, is_torch_tensor
from .onnx import _ops as _mlas_nodes
from .onnx import ort_host
from .pt2e.api import is_pt2e_model
from .pt2e.hosts import HOSTS as PT2E_HOSTS
from .pt2e.hosts import Pt2eHostsReport
from .pt2e.hosts import hosts as pt2e_hosts


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


def _x86_here(params: Any, qx: Any) -> Any:
    """torch's x86 engine on this host. On an AMX CPU oneDNN picks an AMX or an avx512_core_vnni build
    per conv shape, so the kernel is read from torch (the layer's weights packed under the x86 engine
    and run on qx) rather than assumed."""
    kernel = ""
    module = getattr(params, "_module", None)
    if module is not None and resolve_class("auto") == "amx":
        kernel = x86_engine_kernel(module, qx) or ""
    return replace(params, engine="x86", onednn_kernel=kernel)(qx, isa="auto")


# ---------------------------------------------------------------------------- ONNX Runtime (MLAS)


@dataclass(frozen=True)
class OrtOperands:
    """The inputs of the ONNX node ORT runs for a torch layer, as ``onnxruntime.quantization``
    (``quantize_static``, QOperator or QDQ: both run the same kernel) writes them.

    ``op``: ``"QLinearConv"`` (domain ``""``) or ``"QGemm"`` (domain ``"com.microsoft"``, ``transB=1``,
    the form of an exported ``Linear``); ``inputs``: ``(name, array or None)`` pairs in the node's
    input order (``None``: an optional input left empty); ``attrs``: the node's attributes;
    ``relu``: the layer fuses a ReLU (a uint8 Relu after the node, ``max(y, y_zero_point)``; ORT's
    quantizer folds it into the output range when ``y_zero_point`` is 0, where it changes nothing).
    """

    op: str
    domain: str
    inputs: tuple
    attrs: dict
    relu: bool = False

    def arrays(self) -> list:
        """The input arrays in node order (``None`` for an empty optional input)."""
        return [a for _, a in self.inputs]

    def get(self, name: str) -> Any:
        return dict(self.inputs)[name]


def _ort_input(qx: Any, input_scale: Any, input_zero_point: Any) -> tuple:
    """(uint8 array, float32 scale, zero point) of the layer's input."""
    fn = "ort_operands"
    if is_torch_tensor(qx):
        check_quint8_activation(fn, "qx", qx)
        return qx.int_repr().numpy(), np.float32(qx.q_scale()), int(qx.q_zero_point())
    if not isinstance(qx, np.ndarray) or qx.dtype != np.uint8:
        raise TypeError(f"{fn}: qx must be a quint8 torch tensor or a uint8 numpy array, got "
                        f"{getattr(qx, 'dtype', type(qx).__name__)}")
    if input_scale is None or input_zero_point is None:
        raise ValueError(f"{fn}: a uint8 array qx needs input_scale and input_zero_point")
    s = check_scale(fn, "input_scale", input_scale)
    z = check_int(fn, "input_zero_point", input_zero_point, 0, 255)
    return qx, np.float32(s), z


def _ort_bias(params: Any, x_s: np.float32, w_s: np.ndarray, symmetric: bool) -> Optional[np.ndarray]:
    """The int32 bias ORT's quantizer writes (onnxruntime/quantization/base_quantizer.py,
    quantize_bias_static_impl): ``bias_scale = f32(x_s * w_s)`` (float32 arrays, beta 1), then
    ``clip(round_half_even(f64(bias) / f64(bias_scale)), int32)``."""
    if params.bias is None:
        return None
    b = np.asarray(params.bias, dtype=np.float32).reshape(-1)
    O = params.weight.shape[0]
    ws = np.broadcast_to(w_s.reshape(-1), (O,)) if w_s.size == 1 else w_s.reshape(-1)
    if symmetric:
        # onnx_quantizer.py / qdq_quantizer.py, _adjust_weight_scale_for_int32_bias: with all-zero int8
        # weight zero points, a bias scale too small for int32 makes the quantizer enlarge the weight
        # scale and requantize the weights: those would not be the torch layer's integers any more.
        qrange = np.float64(np.iinfo(np.int32).max) - np.float64(np.iinfo(np.int32).min + 1)
        absb = np.abs(b.astype(np.float64)) if w_s.size > 1 else np.full(O, max(np.abs(b).max(), 0.0), np.float64)
        smallest = 1.0001 * (2.0 * absb) / qrange
        cand = np.float64(x_s) * ws.astype(np.float64)
        if np.any((cand < smallest) & (cand > 0)):
            o = int(np.argmax((cand < smallest) & (cand > 0)))
            raise ValueError(f"ort_operands: bias[{o}]={float(b[o])!r} does not fit an int32 at scale x_scale*w_scale="
                             f"{float(cand[o])!r}: ORT's quantizer would enlarge that weight scale and requantize the "
                             f"weights, so the layer's integer weights cannot be kept")
    bias_scale = (x_s * ws.astype(np.float32)).astype(np.float32)
    q = np.round(b.astype(np.float64) / bias_scale.astype(np.float64))
    lo, hi = np.float64(np.iinfo(np.int32).min), np.float64(np.iinfo(np.int32).max)
    return np.clip(q, lo, hi).astype(np.int32)


def ort_operands(params: Any, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None) -> OrtOperands:
    """The ONNX Runtime node (and its operands) for a layer of ``qref.from_torch`` fed ``qx``.

    ``params``: Conv2d / ConvReLU2d, Conv1d / ConvReLU1d (QLinearConv: uint8 input and output,
    int8 weights per tensor or per output channel, ``group``, ``strides``, ``pads``, ``dilations``)
    or Linear / LinearReLU on a 2-D input (QGemm, ``transB=1``). ``qx``: the layer's input, a quint8
    tensor (or a uint8 array with ``input_scale`` / ``input_zero_point``). The scales become float32
    as ONNX stores them; the float bias becomes ORT's quantizer's int32 (``_ort_bias``); a
    ``padding_mode="reflect"`` conv pads the uint8 input first (the exported Pad node) and gets zero
    ``pads``. Raises ValueError for what ORT's kernels or quantizer would not keep as is (weight
    zero points that differ per channel, a bias too large for int32 at its scale), and for layers
    these columns do not reproduce (3-D and transposed convolutions, a Linear on a >2-D input,
    which exports as MatMul + Add and quantizes to QLinearMatMul + QLinearAdd).
    """
    mtype = str(getattr(params, "module_type", type(params).__name__))
    kind = getattr(params, "kind", "")
    if kind == "conv3d" or kind == "conv_transpose" or "Transpose" in mtype or mtype.endswith("3d"):
        why = ("qref's MLAS engine does 1-D and 2-D QLinearConv only" if kind == "conv3d" or mtype.endswith("3d")
               else "qref's MLAS engine reproduces no ConvTranspose kernel of ORT")
        raise ValueError(f"ort_operands: {mtype} is not supported by the ORT columns: {why}")
    x, x_s, x_zp = _ort_input(qx, input_scale, input_zero_point)
    w = np.ascontiguousarray(params.weight, dtype=np.int8)
    O = w.shape[0]
    per_channel = bool(params.per_channel)
    w_s = np.asarray(params.weight_scale, dtype=np.float32).reshape(-1)
    w_z = np.asarray(params.weight_zero_point).reshape(-1)
    if np.any(w_z != w_z[0]):
        shown = str(w_z.tolist()[:8])[:-1] + (", ...]" if w_z.size > 8 else "]")
        raise ValueError(f"ort_operands: weight zero points {shown} differ per channel: ORT's QLinearConv "
                         f"requires one value (and qref's ORT columns take one for QGemm too)")
    if not -128 <= int(w_z[0]) <= 127:
        raise ValueError(f"ort_operands: weight zero point {int(w_z[0])} is out of int8 range")
    if per_channel:
        w_scale, w_zero = w_s.copy(), np.full(O, int(w_z[0]), dtype=np.int8)
    else:
        w_scale, w_zero = np.asarray(w_s[0], dtype=np.float32), np.asarray(int(w_z[0]), dtype=np.int8)
    bias = _ort_bias(params, x_s, w_s, symmetric=not np.any(w_z))
    y_s = np.asarray(np.float32(params.output_scale))
    y_z = np.asarray(int(params.output_zero_point), dtype=np.uint8)
    xs_a, xz_a = np.asarray(x_s, dtype=np.float32), np.asarray(x_zp, dtype=np.uint8)
    relu = bool(params.relu)
    if kind == "linear" or mtype.startswith("Linear"):
        if x.ndim != 2:
            raise ValueError(f"ort_operands: Linear on a {x.ndim}-D input {tuple(x.shape)} is not supported by the ORT "
                             f"columns: it exports as MatMul + Add (QLinearMatMul + QLinearAdd), not Gemm")
        inputs = (("A", np.ascontiguousarray(x)), ("a_scale", xs_a), ("a_zero_point", xz_a), ("B", w),
                  ("b_scale", w_scale), ("b_zero_point", w_zero), ("C", bias), ("y_scale", y_s),
                  ("y_zero_point", y_z))
        return OrtOperands("QGemm", "com.microsoft", inputs, {"alpha": 1.0, "transB": 1}, relu)
    nd = w.ndim - 2
    if nd not in (1, 2) or x.ndim != nd + 2:
        raise ValueError(f"ort_operands: {mtype} with weight {tuple(w.shape)} and input {tuple(x.shape)}: the ORT "
                         f"columns do 1-D and 2-D QLinearConv")
    pads = [int(p) for p in params.padding]
    if getattr(params, "padding_mode", "zeros") != "zeros":
        if params.padding_mode != "reflect":
            raise ValueError(f"ort_operands: padding_mode={params.padding_mode!r} is not supported (zeros, reflect)")
        x = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pads), mode="reflect")
        pads = [0] * nd
    attrs = {"kernel_shape": [int(k) for k in w.shape[2:]], "strides": [int(s) for s in params.stride],
             "pads": pads + pads, "dilations": [int(d) for d in params.dilation], "group": int(params.groups)}
    inputs = (("x", np.ascontiguousarray(x)), ("x_scale", xs_a), ("x_zero_point", xz_a), ("w", w),
              ("w_scale", w_scale), ("w_zero_point", w_zero), ("y_scale", y_s), ("y_zero_point", y_z), ("B", bias))
    return OrtOperands("QLinearConv", "", inputs, attrs, relu)


def ort_output(ops: OrtOperands, host: str) -> np.ndarray:
    """The uint8 output ORT's node gives for ``ops`` on a ``host`` ("vnni": AVX512-VNNI / AVX-VNNI,
    exact int32 sums; "avx2": MLAS's U8S8 kernels saturate int16 pair sums), from qref's MLAS
    engine (the node functions ``qref.onnx.run`` uses)."""
    fn = {"QLinearConv": _mlas_nodes.qlinear_conv, "QGemm": _mlas_nodes.qgemm}[ops.op]
    arrays = ops.arrays()
    if ops.op == "QLinearConv" and arrays[8] is None:
        arrays = arrays[:8]
    y = fn(ops.attrs, arrays, host)[0]
    if ops.relu:
        y = np.maximum(y, ops.get("y_zero_point").astype(np.uint8))
    return y


def _ort(host: str) -> Callable:
    def fn(params: Any, qx: Any) -> np.ndarray:
        return ort_output(ort_operands(params, qx), host)

    return fn


def _ort_how(host: str) -> str:
    """"run here" for the host kind this machine's onnxruntime runs (MLAS picks its kernels by CPUID),
    when onnxruntime is installed; otherwise "formula"."""
    try:
        if importlib.util.find_spec("onnxruntime") is None:
            return "formula"
    except (ImportError, ValueError):  # a broken or shadowed install cannot run anything here
        return "formula"
    return "run here" if ort_host("auto") == host else "formula"


RUNTIMES: list = [
    Runtime("fbgemm-vnni", "torch fbgemm, AVX512-VNNI host", "formula", _engine("fbgemm", "vnni")),
    Runtime("fbgemm-avx2", "torch fbgemm, AVX2 host", "formula", _engine("fbgemm", "avx2")),
    Runtime("x86", "torch x86 engine, this host", "formula", _x86_here),
    Runtime("qnnpack", "torch qnnpack (any x86 host)", "formula", _engine("qnnpack", "auto")),
    Runtime("ort-vnni", "ONNX Runtime, AVX512-VNNI/AVX-VNNI host", _ort_how("vnni"), _ort("vnni")),
    Runtime("ort-avx2", "ONNX Runtime, AVX2 host", _ort_how("avx2"), _ort("avx2")),
]


def register(name: str, label: str, how: str, fn: Callable) -> None:
    """Add (or replace) a runtime column: ``fn(params, qx)`` gives that runtime's output bytes."""
    RUNTIMES[:] = [r for r in RUNTIMES if r.name != name] + [Runtime(name, label, how, fn)]


_WHY = {
    "fbgemm-avx2": "AVX2's vpmaddubsw saturates int16 pair sums (VNNI does not)",
    "x86": "the x86 engine runs oneDNN here (its own float requantization order)",
    "qnnpack": "qnnpack quantizes the bias to int32 (fbgemm adds it in float) and multiplies by "
               "f32(w_s*x_s)*f32(1/y_s) (fbgemm divides)",
    "ort-vnni": "ORT's quantizer rounds the bias to an int32, rne(f64(bias) / f64(f32(x_s*w_s))), and MLAS adds "
                "it to the integer accumulator; fbgemm adds bias/(x_s*w_s) as a float. Both then multiply by "
                "the same f32(f32(x_s*w_s)/y_s) and round half to even, so the bias's rounding (< 0.5 of an "
                "accumulator unit) can carry a value across a .5 tie",
    "ort-avx2": "as ort-vnni, plus MLAS's AVX2 U8S8 kernels (vpmaddubsw) saturate each pair of u8*s8 products "
                "to int16, pairing channels in ORT's (kh, kw, c) order; depthwise convs run an exact kernel",
}


@dataclass
class RuntimeRow:
    name: str
    type: str
    output_shape: Any
    numel: int = 0
    differing: dict = field(default_factory=dict)  # runtime name -> elements differing from the first runtime
    errors: dict = field(default_factory=dict)  # runtime name -> why it was not computed
    why: dict = field(default_factory=dict)  # runtime name -> this layer's share of the column's reason


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
                        + tuple("n/a" if r.name in row.errors else str(row.differing.get(r.name, 0))
                                for r in self.runtimes[1:]))
        lines += _table(body, cols)
        for r in self.runtimes:
            lines.append(f"  {r.name}: {r.label} ({r.how})")
        for r in self.runtimes[1:]:
            n = sum(row.differing.get(r.name, 0) for row in self.rows)
            if n and r.name in _WHY:
                lines.append(f"why {r.name} differs: {_WHY[r.name]}")
                lines += [f"  {row.name}: {row.why[r.name]}" for row in self.rows
                          if row.differing.get(r.name) and r.name in row.why]
        errs: dict = {}
        for row in self.rows:
            for name, msg in row.errors.items():
                errs.setdefault((name, msg), []).append(row.name)
        for (name, msg), layers in errs.items():
            lines.append(f"n/a: {name} not computed for {', '.join(layers)}: {msg}")
        return "\n".join(lines)


def _ort_layer_why(row: RuntimeRow, params: Any, qx: Any, outs: dict) -> None:
    """Each ORT column's reason on this layer: how far the int32 bias moved, how many elements the
    AVX2 host's int16 saturation changed."""
    v, a = outs.get("ort-vnni"), outs.get("ort-avx2")
    if v is not None and row.differing.get("ort-vnni"):
        try:
            ops = ort_operands(params, qx)
        except ValueError:
            return
        b32 = ops.get("B" if ops.op == "QLinearConv" else "C")
        if b32 is None:
            row.why["ort-vnni"] = ("no bias: MLAS clamps in float before rounding where fbgemm's cvtps2dq overflows "
                                   "(|pre-rounding value| >= 2^31)")
        else:
            xs = np.float32(ops.arrays()[1])
            ws = np.broadcast_to(np.asarray(ops.arrays()[4], np.float32).reshape(-1), b32.shape)
            exact = np.asarray(params.bias, np.float64).reshape(-1) / (xs * ws).astype(np.float64)
            moved = float(np.max(np.abs(b32 - exact)))
            row.why["ort-vnni"] = (f"int32 bias rne(bias/(x_s*w_s)) moved by up to {moved:.3f} accumulator units "
                                   f"over {b32.size} channels")
    if a is not None and v is not None and a.shape == v.shape and row.differing.get("ort-avx2"):
        sat = int(np.count_nonzero(a != v))
        depthwise = int(getattr(params, "groups", 1)) > 1 and params.weight.shape[1] == 1
        if sat:
            row.why["ort-avx2"] = f"{sat} element{'s' if sat != 1 else ''} differ from ort-vnni: int16 pair sums saturated"
        else:
            row.why["ort-avx2"] = "the same bytes as ort-vnni (" + (
                "depthwise: exact kernel" if depthwise else "no pair sum reached int16's range") + ")"


def runtimes(model: Any, *inputs: Any) -> Any:
    """Recompute every conv / linear layer of ``model`` as each registered runtime would (see module doc).

    A torchao PT2E model (``convert_pt2e``'s output, which ``torch.compile`` lowers to oneDNN int8 ops on every
    x86 host) gets the cross-host report of ``qref.pt2e.hosts.hosts`` instead, a ``Pt2eHostsReport``: one row per
    int8 op of the compiled program, one column per oneDNN CPU class (docs/runtimes.md)."""
    if not hasattr(model, "named_modules") or not callable(model):
        raise TypeError(f"runtimes: model must be a torch.nn.Module, got {type(model).__name__}")
    check_inputs("runtimes", inputs)
    if is_pt2e_model(model):
        return pt2e_hosts(model, *inputs)
    rts = list(RUNTIMES)
    rows = []
    for call in _capture(model, inputs):
        runner, _reason = _prepare(call)
        if runner is None or not hasattr(runner, "engine") or not call.inputs:
            continue
        row = RuntimeRow(call.name, call.key, _shape(call.output))
        if hasattr(runner, "_module") and runner._module is None:
            # the torch module, for columns that ask this host's torch (_x86_here), on a copy: the
            # prepared runner is shared
            runner = replace(runner)
            runner.__dict__["_module"] = call.module
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
        _ort_layer_why(row, runner, call.inputs[0], outs)
        rows.append(row)
    return RuntimeReport(rts, rows)


# ``qref.runtimes`` is the function (it shadows this submodule's name in the package), so the registry is
# reachable from it: ``qref.runtimes.register(name, label, how, fn)``, ``qref.runtimes.RUNTIMES``.
runtimes.register = register  # type: ignore[attr-defined]
runtimes.RUNTIMES = RUNTIMES  # type: ignore[attr-defined]
runtimes.OrtOperands = OrtOperands  # type: ignore[attr-defined]
runtimes.ort_operands = ort_operands  # type: ignore[attr-defined]
runtimes.ort_output = ort_output  # type: ignore[attr-defined]
runtimes.PT2E_HOSTS = PT2E_HOSTS  # type: ignore[attr-defined]
runtimes.Pt2eHostsReport = Pt2eHostsReport  # type: ignore[attr-defined]
