"""qref's computation of a compiled PT2E program: an interpreter over the recorded post-grad FX
graph (``Program.graph``) that computes each node as inductor's generated code does.

- the oneDNN int8 ops: ``ops.run_op`` (qref's reproduction), on the interpreter's own inputs;
- quantize / dequantize: ``_core.inductor_quantize`` / ``inductor_dequantize``;
- elementwise float32 ops: one IEEE single-precision operation each (numpy float32): inductor
  compiles its C++ with ``-ffp-contract=off`` and without unsafe-math, so nothing is fused into an
  FMA or reordered; ``rsqrt`` is ``1 / sqrt(x)`` (two roundings), division by a constant stays a
  division on CPU;
- sum / mean / var_mean: inductor's summation order (``_core.inductor_sum_rows`` /
  ``inductor_sum_strided``, csrc/qref/pt2e/floatops.h), chosen from the memory layout of the
  buffers the reduction loop reads; mean is ``f32(sum / f32(N))``; var_mean is inductor's two-step
  lowering (mean first, then the sum of ``f32(x - mean)^2``) for at most 1024 reduced elements and
  more than one output, its vectorized Welford reduction (``_core.inductor_welford_rows``)
  otherwise; the variance is ``f32(m2 / f32(N - correction))``.

Nodes whose arithmetic qref does not reproduce (reductions long enough for inductor's cascade
chunks: more than 4096 accumulator steps; a reduction inductor splits across threads; vertical Welford; any op without a handler
here) raise ``NotReproduced`` with the reason; the nodes that depend on them are not computed."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .. import _core
from .ops import NotReproduced, parse_call, run_op

INT8_NODES = ("qconv", "qconv_binary", "qlinear", "qlinear_binary")
_QD = "quantized_decomposed"
# the binary operand's keyword in the int8 nodes of the post-grad graph
_OTHER_KEYS = ("accum", "x_2", "other", "x2")
# inductor (torch/_inductor/lowering.py, codegen/cpp.py): var_mean uses the two-step lowering on CPU
# for at most this many reduced elements (config.cpp.use_two_step_variance_threshold), otherwise
# Welford; float sums over more elements than _CHUNK go through CascadeSumHelper, whose stack
# (chunks of _CHUNK accumulator steps) stays empty, i.e. the plain order, while one accumulator
# takes at most _CHUNK steps: n <= _CHUNK * lanes horizontally, n <= _CHUNK vertically.
_TWO_STEP_MAX = 1024
_CHUNK = 4096


def qd_name(node: Any) -> Optional[str]:
    if node.op != "call_function":
        return None
    t = node.target
    if getattr(t, "namespace", None) == _QD:
        return str(getattr(t, "_overloadpacket", t)).split(".")[-1]
    return None


def is_int8_node(node: Any) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", "") in INT8_NODES


def other_input(node: Any) -> Any:
    for k in _OTHER_KEYS:
        if k in node.kwargs:
            return node.kwargs[k]
    return None


def vec_lanes() -> int:
    """float32 lanes of the vector ISA inductor generates code for on this host (1: scalar code)."""
    try:
        from torch._inductor import cpu_vec_isa
        isa = cpu_vec_isa.pick_vec_isa()
        return int(isa.nelements()) if isa else 1
    except Exception:  # noqa: BLE001 - no usable vector ISA: inductor emits scalar loops
        return 1


def _np(t: Any) -> np.ndarray:
    """A float32 torch tensor or a Python number as numpy float32 (logical order)."""
    import torch

    if isinstance(t, torch.Tensor):
        if t.dtype != torch.float32:
            raise NotReproduced(f"elementwise op on {t.dtype}: only float32 is reproduced")
        return t.detach().contiguous().numpy()
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise NotReproduced(f"operand of type {type(t).__name__}: not reproduced")
    return np.float32(t)  # inductor: static_cast<float>(constant)


def _t(a: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float32)))


def _ew(fn: Callable) -> Callable:
    def run(node: Any, args: list, kwargs: dict, ctx: "Interpreter") -> Any:
        if kwargs.get("alpha", 1) != 1:
            raise NotReproduced(f"alpha={kwargs['alpha']}: not reproduced")
        if kwargs.get("rounding_mode") is not None:
            raise NotReproduced(f"rounding_mode={kwargs['rounding_mode']!r}: not reproduced")
        with np.errstate(all="ignore"):
            return _t(fn(*[_np(a) for a in args]))
    return run


def _relu(x: np.ndarray) -> np.ndarray:
    # std::max(x, 0) / at::vec::clamp_min(x, 0): the input when it is not below 0 (keeps -0.0)
    return np.where(x < 0, np.float32(0), x)


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return np.float32(1) / np.sqrt(x)


def _dims(shape: tuple, dims: Any) -> list:
    nd = len(shape)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(nd))
    if isinstance(dims, int):
        dims = [dims]
    return sorted({d % nd for d in dims})


def _meta_stride(node: Any) -> Optional[tuple]:
    v = node.meta.get("val") if hasattr(node, "meta") else None
    if v is None or not hasattr(v, "stride"):
        return None
    try:
        return tuple(int(s) for s in v.stride())
    except TypeError:
        return None


_REALIZED = ("var_mean", "mean", "sum")
_POINTWISE = ("add", "sub", "mul", "div", "relu", "neg", "rsqrt", "sqrt", "clone")


def _layout_stride(node: Any, t: Any) -> tuple:
    """The memory order inductor's reduction loop follows: that of the buffers it loads. Pointwise
    nodes are fused into the reduction (never stored), so the walk goes back through them to the
    stored buffers (graph inputs, constants, int8 op outputs, other reductions) of the same shape."""
    shape = tuple(t.shape)
    found: set = set()
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        v = n.meta.get("val") if hasattr(n, "meta") else None
        if v is not None and hasattr(v, "shape") and tuple(v.shape) != shape:
            continue  # a broadcast operand: not what the loop runs over
        name = str(getattr(n.target, "_overloadpacket", n.target)).split(".")[-1] if n.op == "call_function" else ""
        if n.op in ("placeholder", "get_attr") or is_int8_node(n) or name in _REALIZED or \
                (n.target is operator.getitem and str(getattr(n.args[0].target, "_overloadpacket", "")).endswith(
                    _REALIZED)):
            st = _meta_stride(n)
            if st is None:
                raise NotReproduced(f"the layout of {n.name} is unknown")
            found.add(st)
            continue
        if name in _POINTWISE or qd_name(n) is not None:
            stack.extend(a for a in n.all_input_nodes)
            continue
        raise NotReproduced(f"a reduction over {node.name}, computed through {n.name} ({n.target}): its loop order "
                            f"is not reproduced")
    if len(found) != 1:
        raise NotReproduced(f"a reduction over buffers with {len(found)} different layouts: not reproduced")
    return found.pop()


@dataclass
class _Arranged:
    """x over ``dims`` as [O][N][In] in the memory order of ``stride``: O outer outputs, N reduced
    elements, In inner outputs (In == 1: the reduced elements are innermost)."""

    arr: np.ndarray
    outer: list
    inner: list
    shape: tuple
    out_shape: tuple

    def back(self, s: np.ndarray) -> np.ndarray:
        """[O][In] results as an array of the keepdim output shape (logical order)."""
        import torch

        rest = self.outer + self.inner
        res = torch.from_numpy(np.ascontiguousarray(s)).reshape([self.shape[d] for d in rest])
        res = res.permute(tuple(sorted(range(len(rest)), key=lambda i: rest[i])))
        return res.contiguous().reshape(self.out_shape).numpy()


def _arrange(x: Any, dims: list, stride: tuple) -> _Arranged:
    shape = tuple(x.shape)
    keep = [d for d in range(len(shape)) if shape[d] != 1]
    red = [d for d in keep if d in dims]
    out_shape = tuple(1 if d in dims else s for d, s in enumerate(shape))
    if not red:
        raise NotReproduced("a reduction over size-1 dimensions only: not reproduced")
    order = sorted(keep, key=lambda d: -stride[d])
    flags = [d in red for d in order]
    a, b = flags.index(True), len(flags) - 1 - flags[::-1].index(True)
    if not all(flags[a:b + 1]):
        raise NotReproduced("a reduction over dimensions not adjacent in memory: not reproduced")
    outer, inner = order[:a], order[b + 1:]
    O = int(np.prod([shape[d] for d in outer])) if outer else 1
    N = int(np.prod([shape[d] for d in red]))
    In = int(np.prod([shape[d] for d in inner])) if inner else 1
    xp = x.detach().permute(*(order + [d for d in range(len(shape)) if d not in keep]))
    arr = np.ascontiguousarray(xp.contiguous().numpy()).reshape(O, N, In)
    return _Arranged(arr, outer, inner, shape, out_shape)


def inductor_sum(x: Any, dims: list, stride: tuple, lanes: int) -> np.ndarray:
    """The float32 sum of ``x`` (torch float32, logical shape) over ``dims``, keepdim, in the
    order inductor's code adds for a buffer with ``stride``: horizontal when the reduced elements
    are the innermost in memory, vertical (one sequential sum per output) when they are not."""
    g = _arrange(x, dims, stride)
    O, N, In = g.arr.shape
    _check_not_split(O, In, N, lanes)
    most = _CHUNK * lanes if In == 1 else _CHUNK
    if N > most:
        raise NotReproduced(f"a float sum over {N} > {most} elements: inductor's cascade summation "
                            f"(CascadeSumHelper) then chunks it, not reproduced")
    if In == 1:
        s = _core.inductor_sum_rows(np.ascontiguousarray(g.arr.reshape(O, N)), lanes).reshape(O, 1)
    else:
        s = _core.inductor_sum_strided(g.arr)
    return g.back(s)


def inductor_welford(x: Any, dims: list, stride: tuple, lanes: int) -> tuple:
    """(mean, m2) of inductor's vectorized Welford reduction, keepdim."""
    g = _arrange(x, dims, stride)
    O, N, In = g.arr.shape
    _check_not_split(O, In, N, lanes)
    if In != 1:
        raise NotReproduced("a Welford reduction over strided elements (vertical): not reproduced")
    if lanes not in (8, 16):
        raise NotReproduced(f"a Welford reduction with {lanes} vector lanes: reproduced for 8 (AVX2) and 16 (AVX-512)")
    if N > _CHUNK * lanes:
        raise NotReproduced(f"a Welford reduction over {N} > {_CHUNK * lanes} elements: inductor's WelfordHelper "
                            f"cascades its chunks there, not reproduced")
    mean, m2 = _core.inductor_welford_rows(np.ascontiguousarray(g.arr.reshape(O, N)), lanes)
    return g.back(mean.reshape(O, 1)), g.back(m2.reshape(O, 1))


def _check_not_split(outer: int, inner: int, n: int, lanes: int) -> None:
    """inductor parallelizes into the reduced loop (per-thread partial results combined in thread
    order: another order) when the outer loops give too few parallel chunks for its threads
    (codegen/cpp.py decide_parallel_depth), or when the reduced loop has more than 300 times the
    steps of the outer ones (LoopNest.max_parallel_depth): refused rather than guessed."""
    import torch
    from torch._inductor import config

    threads = config.cpp.threads if config.cpp.threads and config.cpp.threads > 0 else torch.get_num_threads()
    if threads <= 1:
        return
    outputs = outer * inner
    if outputs < 2 * threads and outputs != threads and n // threads >= config.cpp.min_chunk_size:
        raise NotReproduced(f"{outputs} outputs of a {n}-element reduction on {threads} threads: inductor may split "
                            f"the reduction across threads; not reproduced")
    # horizontal: vector steps over the reduced elements; vertical: one step per reduced element
    outer_steps = outer if inner == 1 else outer * max(1, inner // lanes)
    red_steps = n // lanes if inner == 1 else n
    if outer_steps * 300 < red_steps:
        raise NotReproduced(f"a {n}-element reduction with {outputs} outputs: inductor parallelizes the reduced "
                            f"loop across its {threads} threads; not reproduced")


def _reduction_args(node: Any, args: list, kwargs: dict, ctx: "Interpreter") -> tuple:
    import torch

    x = args[0]
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
        raise NotReproduced(f"reduction of {getattr(x, 'dtype', type(x).__name__)}: only float32 is reproduced")
    dims = _dims(tuple(x.shape), args[1] if len(args) > 1 else kwargs.get("dim"))
    keepdim = bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
    if kwargs.get("dtype") not in (None, torch.float32):
        raise NotReproduced(f"reduction with dtype={kwargs['dtype']}: not reproduced")
    return x, dims, keepdim, _layout_stride(node.args[0], x)


def _squeeze(a: np.ndarray, dims: list, keepdim: bool) -> Any:
    return _t(a if keepdim else np.squeeze(a, axis=tuple(dims)) if dims else a)


def _sum(node: Any, args: list, kwargs: dict, ctx: "Interpreter") -> Any:
    x, dims, keepdim, stride = _reduction_args(node, args, kwargs, ctx)
    return _squeeze(inductor_sum(x, dims, stride, ctx.lanes), dims, keepdim)


def _mean_keep(x: Any, dims: list, stride: tuple, lanes: int) -> tuple:
    n = int(np.prod([x.shape[d] for d in dims]))
    s = inductor_sum(x, dims, stride, lanes)
    return s / np.float32(n), n


def _mean(node: Any, args: list, kwargs: dict, ctx: "Interpreter") -> Any:
    x, dims, keepdim, stride = _reduction_args(node, args, kwargs, ctx)
    m, _ = _mean_keep(x, dims, stride, ctx.lanes)
    return _squeeze(m, dims, keepdim)


def _var_mean(node: Any, args: list, kwargs: dict, ctx: "Interpreter") -> Any:
    import torch

    x, dims, keepdim, stride = _reduction_args(node, args, kwargs, ctx)
    corr = kwargs.get("correction", 1 if len(args) <= 3 else args[3])
    corr = 1 if corr is None else corr
    n = int(np.prod([x.shape[d] for d in dims]))
    outputs = x.numel() // max(n, 1)
    if n <= _TWO_STEP_MAX and outputs != 1:
        # the two-step lowering: the mean, then the sum of squared differences
        mean, _ = _mean_keep(x, dims, stride, ctx.lanes)
        with np.errstate(all="ignore"):
            d = _np(x) - mean
            sq = d * d
        # summed in the same loop order as x (x's layout)
        s = inductor_sum(torch.from_numpy(np.ascontiguousarray(sq)), dims, stride, ctx.lanes)
    else:
        mean, s = inductor_welford(x, dims, stride, ctx.lanes)
    denom = np.float32(max(n - corr, 0))
    with np.errstate(all="ignore"):
        var = s / denom
    return (_squeeze(var, dims, keepdim), _squeeze(mean, dims, keepdim))


def _view(fn: Callable) -> Callable:
    def run(node: Any, args: list, kwargs: dict, ctx: "Interpreter") -> Any:
        return fn(*args, **kwargs)
    return run


def _handlers() -> dict:
    import torch

    aten, prims = torch.ops.aten, torch.ops.prims
    h = {
        aten.add.Tensor: _ew(lambda a, b: a + b),
        aten.sub.Tensor: _ew(lambda a, b: a - b),
        aten.mul.Tensor: _ew(lambda a, b: a * b),
        aten.div.Tensor: _ew(lambda a, b: a / b),
        aten.relu.default: _ew(_relu),
        aten.neg.default: _ew(lambda a: -a),
        aten.rsqrt.default: _ew(_rsqrt),
        aten.sqrt.default: _ew(np.sqrt),
        aten.sum.dim_IntList: _sum,
        aten.mean.dim: _mean,
        aten.var_mean.correction: _var_mean,
        operator.getitem: _view(lambda a, i: a[i]),
        aten.view.default: _view(lambda a, s: a.reshape(s)),
        aten._unsafe_view.default: _view(lambda a, s: a.reshape(s)),
        aten.reshape.default: _view(lambda a, s: a.reshape(s)),
        aten.permute.default: _view(lambda a, p: a.permute(*p)),
        aten.squeeze.dim: _view(lambda a, d: a.squeeze(d)),
        aten.squeeze.dims: _view(lambda a, d: a.squeeze(tuple(d))),
        aten.unsqueeze.default: _view(lambda a, d: a.unsqueeze(d)),
        aten.clone.default: _view(lambda a, **k: a.clone()),
        prims.inductor_force_stride_order.default: _view(lambda a, s: a),
    }
    return h


_HANDLERS: dict = {}


def handler(node: Any) -> Optional[Callable]:
    if not _HANDLERS:
        _HANDLERS.update(_handlers())
    return _HANDLERS.get(node.target)


@dataclass
class Result:
    env: dict = field(default_factory=dict)          # node -> value
    failed: dict = field(default_factory=dict)       # node -> reason (its own failure)
    blocked: dict = field(default_factory=dict)      # node -> the failed node it depends on
    outputs: list = field(default_factory=list)      # graph outputs (None where not computed)
    output_nodes: list = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed and not self.blocked and all(o is not None for o in self.outputs)


class Interpreter:
    """Runs ``prog.graph`` with qref's arithmetic. ``seeded``: each int8 op's output is torch's
    recorded one (to verify the float code from observed values); otherwise qref's own."""

    def __init__(self, prog: Any, inputs: tuple, isa: str = "auto", seeded: bool = False,
                 pairs: Optional[list] = None, computed: Optional[dict] = None) -> None:
        self.prog, self.inputs, self.isa, self.seeded = prog, inputs, isa, seeded
        self.lanes = vec_lanes()
        self.call_of = {n: c for n, c in (pairs or []) if n is not None}
        # node -> qref's output for the recorded arguments (reused when the inputs are those)
        self.computed = computed or {}

    def run(self) -> Result:
        import torch

        g = self.prog.graph
        if g is None:
            raise NotReproduced("the post-grad graph was not recorded")
        res = Result()
        env, om = res.env, g.owning_module
        placeholders = [n for n in g.nodes if n.op == "placeholder"]
        flat = list(self.prog.inputs or self.inputs)
        if len(placeholders) != len(flat):
            raise NotReproduced(f"{len(placeholders)} graph inputs for {len(flat)} inputs")
        with torch.no_grad():
            for n in g.nodes:
                if n.op == "placeholder":
                    env[n] = flat[placeholders.index(n)]
                    continue
                if n.op == "get_attr":
                    v = om
                    for part in str(n.target).split("."):
                        v = getattr(v, part)
                    env[n] = v.detach() if isinstance(v, torch.Tensor) else v
                    continue
                if n.op == "output":
                    outs = n.args[0]
                    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
                    res.output_nodes = outs
                    res.outputs = [env.get(o) if isinstance(o, torch.fx.Node) else o for o in outs]
                    continue
                deps = [d for d in n.all_input_nodes if d in res.failed or d in res.blocked]
                if deps:
                    res.blocked[n] = res.blocked.get(deps[0], deps[0])
                    continue
                try:
                    env[n] = self.compute(n, env)
                except NotReproduced as e:
                    res.failed[n] = str(e)
        return res

    def compute(self, n: Any, env: dict) -> Any:
        import torch

        def val(a: Any) -> Any:
            return torch.fx.node.map_arg(a, lambda x: env[x])

        args, kwargs = val(tuple(n.args)), val(dict(n.kwargs))
        kind = qd_name(n)
        if kind is not None:
            return _qd(kind, list(args), kwargs)
        if is_int8_node(n):
            return self._int8(n, env)
        if n.op != "call_function":
            raise NotReproduced(f"{n.op} node: not reproduced")
        h = handler(n)
        if h is None:
            raise NotReproduced(f"{n.target}: a float op qref does not reproduce")
        return h(n, list(args), kwargs, self)

    def _int8(self, n: Any, env: dict) -> Any:
        call = self.call_of.get(n)
        if call is None:
            raise NotReproduced("no recorded call for this int8 op")
        want = tuple(n.meta["val"].shape) if "val" in n.meta else tuple(call.output.shape)
        if self.seeded:
            return call.output.reshape(want) if tuple(call.output.shape) != want else call.output
        args = list(call.args)
        args[0] = _like(env[n.kwargs["x"]], call.args[0], "x")
        if ".binary" in call.name:
            o = other_input(n)
            if o is not None:
                args[6] = _like(env[o], call.args[6], "the binary operand")
        same = all(_same_bits(a, b) for a, b in zip(args, call.args) if a is not b)
        if same and n in self.computed:
            out = self.computed[n]
        else:
            out = run_op(parse_call(call.name, args), self.isa)
        return out.reshape(want) if tuple(out.shape) != want else out


def _same_bits(a: Any, b: Any) -> bool:
    import torch

    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return a == b
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.contiguous(), b.contiguous()
    if a.dtype == torch.float32:
        a, b = a.view(torch.int32), b.view(torch.int32)
    return bool(torch.equal(a, b))


def _like(v: Any, ref: Any, what: str) -> Any:
    if v.dtype != ref.dtype or v.numel() != ref.numel():
        raise NotReproduced(f"{what}: computed {v.dtype} {tuple(v.shape)}, the op takes {ref.dtype} {tuple(ref.shape)}")
    return v.reshape(ref.shape)


def _qd(kind: str, args: list, kwargs: dict) -> Any:
    import torch

    x = args[0]
    scale, zp = float(args[1]), int(args[2])
    if kind == "quantize_per_tensor":
        qmin, qmax, dt = int(args[3]), int(args[4]), args[5] if len(args) > 5 else kwargs.get("dtype")
        if x.dtype != torch.float32 or dt != torch.uint8:
            raise NotReproduced(f"quantize {x.dtype} -> {dt}: only float32 -> uint8 is reproduced")
        return torch.from_numpy(_core.inductor_quantize(np.ascontiguousarray(x.detach().contiguous().numpy()),
                                                        scale, zp, qmin, qmax))
    if kind == "dequantize_per_tensor":
        out_dtype = kwargs.get("out_dtype")
        if x.dtype != torch.uint8 or out_dtype not in (None, torch.float32):
            raise NotReproduced(f"dequantize {x.dtype} -> {out_dtype}: only uint8 -> float32 is reproduced")
        return torch.from_numpy(_core.inductor_dequantize(np.ascontiguousarray(x.detach().contiguous().numpy()),
                                                          scale, zp))
    raise NotReproduced(f"{kind}: not reproduced")
