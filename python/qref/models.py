"""qref.models: whole quantized models, op by op, through torch's dispatcher.

Every op that reaches torch's dispatcher with a quantized tensor among its arguments or results
is seen here, whatever issued it (a quantized module, a functional call in ``forward``, an FX
graph node): a ``TorchDispatchMode`` (torch.utils._python_dispatch) intercepts it.

- ``OPS`` maps an op (``"quantized::add_relu"``, ``"aten::quantized_max_pool2d"``, ...) to a
  function computing it with qref (``qref.engines.aten`` for ATen's ops; the module's params from
  ``qref.from_torch`` for conv and linear, which are keyed by the module that issued the op).
- ``LAYOUT_OPS`` only move bytes (view, permute, cat-free reshapes, clone, slicing...): torch
  runs them, no row.
- anything else that touches a quantized tensor is arithmetic qref does not reproduce: a
  "not verified" row in ``qref.check``, ``UnsupportedOpError`` in ``qref.run``.

``run(model, *inputs)`` and ``mode()`` compute every quantized op with qref (torch carries the
graph and the layout ops); ``capture`` (used by ``qref.check``) lets torch compute each op and
hands each call, with torch's own inputs and output, to a callback that recomputes it with qref.

All state is per call (the mode object and the hooks' closures; hooks act on their own thread
only), so two threads may check or run the same model at once.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from . import _core
from . import onnx as _onnx
from . import pt2e as _pt2e
from .bridge.from_torch import from_torch
from .bridge.modules import UnsupportedModuleError
from .bridge.onednn_verbose import _with_onednn_kernel, onednn_lock
from .common.errors import UnsupportedOpError
from .common.validate import check_inputs
from .engines import aten as A
from .engines.aten._args import check_capability, check_scale, check_threads, check_zero_point
from .engines.qnnpack import ops as QN

# ---------------------------------------------------------------------------- op classes

# ATen ops that only move, alias or describe bytes: exact by construction, run by torch.
LAYOUT_OPS = frozenset(
    "aten::" + n for n in (
        "view", "_unsafe_view", "reshape", "_reshape_alias", "view_as", "permute", "transpose", "t", "split",
        "split_with_sizes", "unsafe_split", "chunk", "unbind", "contiguous", "clone", "select", "slice", "narrow",
        "squeeze", "unsqueeze", "expand", "expand_as", "flatten", "detach", "alias", "copy_", "as_strided",
        "_to_copy", "to", "empty_like", "empty", "new_empty", "new_empty_strided", "empty_strided", "lift_fresh",
        "_local_scalar_dense", "q_scale", "q_zero_point", "q_per_channel_scales", "q_per_channel_zero_points",
        "q_per_channel_axis", "qscheme", "int_repr", "_make_per_tensor_quantized_tensor",
        "_make_per_channel_quantized_tensor", "_empty_affine_quantized", "_empty_per_channel_affine_quantized",
        "channel_shuffle", "native_channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "dropout",
        "feature_dropout", "is_same_size", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "dim",
        "size", "stride", "numel", "is_contiguous", "set_", "resize_", "index_select", "movedim", "swapaxes",
        "unflatten", "identity",
    ))

# ops whose output is quantized although no input is
_QUANTIZE_OPS = frozenset({"aten::quantize_per_tensor", "aten::quantize_per_channel"})


def op_name(func: Any) -> str:
    """``"quantized::add"``, ``"aten::relu_"``: the op's schema name without the overload."""
    return func._schema.name


def _bind(func: Any, args: tuple, kwargs: dict) -> dict:
    """The op's arguments by schema name, defaults filled in."""
    out = {}
    schema = func._schema.arguments
    for i, a in enumerate(schema):
        if i < len(args):
            out[a.name] = args[i]
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def _is_q(t: Any) -> bool:
    import torch

    return isinstance(t, torch.Tensor) and t.is_quantized


def _touches_quantized(args: tuple, kwargs: dict) -> bool:
    for a in list(args) + list(kwargs.values()):
        if _is_q(a):
            return True
        if isinstance(a, (list, tuple)) and any(_is_q(v) for v in a):
            return True
    return False


def _quantized_call(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether a dispatched op is one qref accounts for: a quantize, a quantized:: op (also with
    float operands, e.g. the dynamic linear) or any op with a quantized tensor argument."""
    return name in _QUANTIZE_OPS or name.startswith("quantized::") or _touches_quantized(args, kwargs)


def _makes_quantized(out: Any) -> bool:
    return _is_q(out) or (isinstance(out, (list, tuple)) and any(_is_q(v) for v in out))


def _quantized_args(args: tuple) -> list:
    out = []
    for a in args:
        if _is_q(a):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(v for v in a if _is_q(v))
    return out


def _f(v: Any) -> float:
    return float(v.item()) if hasattr(v, "item") else float(v)


def _i(v: Any) -> int:
    return int(v.item()) if hasattr(v, "item") else int(v)


def _dtype_name(d: Any) -> str:
    return str(d).replace("torch.", "")


# ---------------------------------------------------------------------------- qref's ops


@dataclass
class OpContext:
    """What an op's qref function may need besides its arguments."""

    module: Any  # the innermost module whose forward issued the op (None: none known)
    isa: str = "auto"
    # qref's threads for conv/linear (the numerics do not depend on them). ATen's ops always follow
    # torch.get_num_threads(): where ATen's split into threads moves the SIMD/scalar boundary, the
    # count torch runs with decides the bytes.
    threads: Optional[int] = None
    runner: Optional[Callable] = None  # module -> params object (conv/linear), cached


def _like_format(x: Any, out: Any) -> Any:
    """quantize/dequantize allocate their output in the input's suggested memory format (dense),
    also for a non-dense view such as a channel slice of a channels_last tensor."""
    import torch

    if _suggests_channels_last(x) and not out.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out


def _quantize(ctx, func, b):
    x = b["self"]
    return _like_format(x, A.quantize_per_tensor(x, scale=_f(b["scale"]), zero_point=_i(b["zero_point"]),
                                                 dtype=_dtype_name(b["dtype"])))


def _dequantize(ctx, func, b):
    x = b["self"] if "self" in b else b.get("tensors")
    if isinstance(x, (list, tuple)):
        return [_like_format(t, A.dequantize(t)) for t in x]
    return _like_format(x, A.dequantize(x))


def _binary(op):
    def run(ctx, func, b):
        ov = func._overloadname
        if ov in ("Scalar", "Scalar2"):
            qa, c = b["qa"], _f(b["b"])
            relu = op in (A.add_relu, A.mul_relu)
            if op in (A.add, A.add_relu):
                return A.add_scalar(qa, c, relu=relu)
            return A.mul_scalar(qa, c, relu=relu)
        if ov not in ("", "default"):
            raise UnsupportedOpError(f"{func} is not reproduced by qref (the out= form)")
        qa, qb = b["qa"], b["qb"]
        if tuple(qa.shape) != tuple(qb.shape):
            return _broadcast_binary(_BINARY_CODES[op], qa, qb, _f(b["scale"]), _i(b["zero_point"]), ctx.threads)
        if _same_dense(qa, qb):  # the bytes read in place (no int_repr copies), the same kernel
            return _dense_binary(_BINARY_CODES[op], qa, qb, _f(b["scale"]), _i(b["zero_point"]), ctx.threads)
        return op(qa, qb, scale=_f(b["scale"]), zero_point=_i(b["zero_point"]))

    return run


_BINARY_CODES = {A.add: 0, A.add_relu: 1, A.mul: 2, A.mul_relu: 3}


def _same_dense(a: Any, b: Any) -> bool:
    import torch

    return (a.dtype == b.dtype and a.dtype in (torch.quint8, torch.qint8) and a.stride() == b.stride()
            and a.qscheme() == torch.per_tensor_affine and b.qscheme() == torch.per_tensor_affine
            and _dense(a) and _dense(b))


def _dense_binary(code: int, qa: Any, qb: Any, scale: float, zero_point: int, threads: Optional[int]) -> Any:
    """quantized add/mul of two dense tensors in one memory format: ATen's TensorIterator
    coalesces them into one contiguous range, which qref's elementwise kernel walks as
    qref.engines.aten.add/mul do (after their argument checks, done here)."""
    import torch

    fn = "mul" if code >= 2 else "add"
    dt = "qint8" if qa.dtype == torch.qint8 else "quint8"
    s = check_scale(fn, "scale", scale)
    z = check_zero_point(fn, "zero_point", zero_point, dt)
    out = _core.aten_binary(code, _raw(qa), _raw(qb), qa.q_scale(), qa.q_zero_point(), qb.q_scale(),
                            qb.q_zero_point(), s, z, check_capability(fn, None), check_threads(fn, None))
    if qa.dim() == 4 and not qa.is_contiguous():
        n, c, h, w = qa.shape
        r = torch.from_numpy(out.reshape(n, h, w, c)).permute(0, 3, 1, 2)
    elif qa.dim() == 5 and not qa.is_contiguous():
        n, c, d, h, w = qa.shape
        r = torch.from_numpy(out.reshape(n, d, h, w, c)).permute(0, 4, 1, 2, 3)
    else:
        r = torch.from_numpy(out.reshape(tuple(qa.shape)))
    return torch._make_per_tensor_quantized_tensor(r, s, z)
_GRAIN = 32768  # at::internal::GRAIN_SIZE


def _broadcast_binary(code: int, qa: Any, qb: Any, scale: float, zero_point: int, threads: Optional[int]) -> Any:
    """quantized add/mul with a broadcast operand (squeeze-excitation's x * gate): ATen's
    TensorIterator walks the output in its memory format (qa's), coalescing dims while every
    operand stays linear; each inner row is one cpu_kernel_vec call (SIMD blocks of 64, scalar
    tail), rows split further where at::parallel_for cuts the range. qref's elementwise kernel is
    called on exactly those segments; an inner dim where the broadcast operand is neither
    contiguous nor constant runs the scalar op only (segments shorter than a SIMD block)."""
    import torch

    fn = "mul" if code >= 2 else "add"
    if qa.dtype != qb.dtype or qa.dtype not in (torch.quint8, torch.qint8):
        raise UnsupportedOpError(f"quantized::{fn}: operands {qa.dtype} and {qb.dtype} are not reproduced")
    try:
        shape = torch.broadcast_shapes(qa.shape, qb.shape)
    except RuntimeError as e:
        raise ValueError(f"quantized::{fn}: shapes {tuple(qa.shape)} and {tuple(qb.shape)} do not broadcast") from e
    if tuple(shape) != tuple(qa.shape):
        raise UnsupportedOpError(f"quantized::{fn}: the first operand {tuple(qa.shape)} is broadcast to "
                                 f"{tuple(shape)} (qref reproduces a broadcast second operand only)")
    cl = qa.dim() == 4 and not qa.is_contiguous() and qa.is_contiguous(memory_format=torch.channels_last)
    if not cl and not qa.is_contiguous():
        raise UnsupportedOpError(f"quantized::{fn}: a strided first operand is not reproduced")
    order = [1, 3, 2, 0] if cl else list(range(qa.dim() - 1, -1, -1))  # innermost first
    be = qb.int_repr().expand(shape)
    sizes = [shape[d] for d in order]
    sb = [be.stride(d) for d in order]
    dense = []  # the output's (and qa's) strides in its own memory order
    acc = 1
    for s_ in sizes:
        dense.append(acc)
        acc *= s_
    # TensorIterator coalesce_dimensions: merge the next dim while every operand stays linear
    inner, k = sizes[0] if sizes else 1, 1
    sb0 = sb[0] if sb else 0
    while k < len(sizes):
        if sizes[k] == 1 or all(st[k] == st[k - 1] * sizes[k - 1] or sizes[k - 1] == 1 for st in (dense, sb)):
            inner *= sizes[k]
            k += 1
        else:
            break
    vec_ok = sb0 in (0, 1) or inner == 1
    perm = [order[i] for i in range(len(order) - 1, -1, -1)]  # outermost first
    a_mem = np.ascontiguousarray(qa.int_repr().permute(*perm).contiguous().numpy()).reshape(-1)
    b_mem = np.ascontiguousarray(be.permute(*perm).contiguous().numpy()).reshape(-1)
    n = a_mem.size
    nt = check_threads(fn, None)
    cap = check_capability(fn, None)
    cuts = {0, n}
    if n >= _GRAIN and nt > 1:
        tasks = min(nt, -(-n // _GRAIN))
        chunk = -(-n // tasks)
        cuts.update(range(0, n, chunk))
    cuts.update(range(0, n, max(inner, 1)))
    if not vec_ok:
        cuts.update(range(0, n, 63))
    edges = sorted(cuts)
    out = np.empty_like(a_mem)
    sa, za, sb_, zb = qa.q_scale(), qa.q_zero_point(), qb.q_scale(), qb.q_zero_point()
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi > lo:
            out[lo:hi] = _core.aten_binary(code, a_mem[lo:hi], b_mem[lo:hi], sa, za, sb_, zb, scale, zero_point,
                                           cap, 1)
    mem_shape = [shape[d] for d in perm]
    r = torch.from_numpy(out.reshape(mem_shape))
    inv = [perm.index(d) for d in range(len(perm))]
    return torch._make_per_tensor_quantized_tensor(r.permute(*inv), scale, zero_point)


def _add_scalar(relu):
    def run(ctx, func, b):
        return A.add_scalar(b["qa"], _f(b["b"]), relu=relu)

    return run


def _qcat(relu):
    def run(ctx, func, b):
        xs = list(b["qx"])
        s = xs[0].q_scale() if b.get("scale") is None else _f(b["scale"])
        z = xs[0].q_zero_point() if b.get("zero_point") is None else _i(b["zero_point"])
        return _cat_format(xs, A.cat(xs, dim=_i(b["dim"]), scale=s, zero_point=z, relu=relu))

    return run


def _aten_cat(ctx, func, b):
    xs = list(b["tensors"])
    # cat_quantized_cpu: the output takes the first input's qparams (quantized_cat_impl)
    return _cat_format(xs, A.cat(xs, dim=_i(b["dim"]), scale=xs[0].q_scale(), zero_point=xs[0].q_zero_point()))


def _suggests_channels_last(t: Any) -> bool:
    """TensorBase::suggest_memory_format for a 4-d tensor (c10 is_channels_last_strides_2d_s4)."""
    if t.dim() != 4:
        return False
    sizes, strides = t.shape, t.stride()
    if strides[1] == 0:
        return False
    lo = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < lo:
            return False
        if d == 0 and lo == strides[1]:
            return False
        lo = strides[d] * (sizes[d] if sizes[d] > 1 else 1)
    return True


def _cat_format(xs: list, out: Any) -> Any:
    """quantized_cat_impl's slow path dequantizes each input (in its suggested memory format),
    at::cat's the floats (channels_last when every input suggests it, else contiguous) and
    quantizes in that format: the bytes qref computes, laid out as torch's."""
    import torch

    if out.dim() == 4 and out.is_contiguous() and all(_suggests_channels_last(x) for x in xs):
        return out.contiguous(memory_format=torch.channels_last)
    return out


def _relu(ctx, func, b):
    # qrelu: max(q, zero_point), which is clamp's lower bound 0.0 quantized with x's qparams
    return A.clamp(b["self"], min=0.0)


def _hardswish_q(ctx, func, b):
    return A.hardswish(b["input"], scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]))


def _hardswish_aten(ctx, func, b):
    x = b["self"]
    return A.hardswish(x, scale=x.q_scale(), zero_point=x.q_zero_point())


def _leaky_q(ctx, func, b):
    return A.leaky_relu(b["qx"], negative_slope=_f(b["negative_slope"]), scale=_f(b["output_scale"]),
                        zero_point=_i(b["output_zero_point"]))


def _leaky_aten(ctx, func, b):
    x = b["self"]
    return A.leaky_relu(x, negative_slope=_f(b["negative_slope"]), scale=x.q_scale(), zero_point=x.q_zero_point())


def _sigmoid_q(ctx, func, b):
    return A.sigmoid(b["qx"], scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]))


def _clamp(ctx, func, b):
    if func._overloadname not in ("", "default"):
        raise UnsupportedOpError(f"{func} is not reproduced by qref (tensor bounds)")
    lo = None if b["min"] is None else _f(b["min"])
    hi = None if b["max"] is None else _f(b["max"])
    return A.clamp(b["self"], min=lo, max=hi)


def _hardtanh(ctx, func, b):
    return A.hardtanh(b["self"], min_val=_f(b["min_val"]), max_val=_f(b["max_val"]))


def _threshold(ctx, func, b):
    return A.threshold(b["self"], threshold=_f(b["threshold"]), value=_f(b["value"]))


def _max_pool2d(ctx, func, b):
    return A.max_pool2d(b["self"], kernel_size=list(b["kernel_size"]), stride=list(b["stride"] or []),
                        padding=list(b["padding"]), dilation=list(b["dilation"]), ceil_mode=bool(b["ceil_mode"]))


def _max_pool1d(ctx, func, b):
    return A.max_pool1d(b["self"], kernel_size=list(b["kernel_size"]), stride=list(b["stride"] or []),
                        padding=list(b["padding"]), dilation=list(b["dilation"]), ceil_mode=bool(b["ceil_mode"]))


def _avg_pool2d(ctx, func, b):
    return A.avg_pool2d(b["self"], kernel_size=list(b["kernel_size"]), stride=list(b["stride"] or []),
                        padding=list(b["padding"]), ceil_mode=bool(b["ceil_mode"]),
                        count_include_pad=bool(b["count_include_pad"]), divisor_override=b["divisor_override"])


def _adaptive(fn):
    def run(ctx, func, b):
        return fn(b["self"], output_size=[int(v) for v in b["output_size"]])

    return run


def _mean(ctx, func, b):
    x = b["self"]
    if b.get("dtype") is not None:
        raise UnsupportedOpError(f"{func} with dtype={b['dtype']} is not reproduced by qref")
    dim = b.get("dim")
    if dim is None or len(dim) == 0:
        dim = list(range(x.dim()))
    return A.mean(x, dim=list(dim), keepdim=bool(b.get("keepdim", False)))


def _upsample(bilinear):
    def run(ctx, func, b):
        x = b["self"] if "self" in b else b["input"]
        kw = dict(align_corners=bool(b["align_corners"])) if bilinear else {}
        fn = A.upsample_bilinear2d if bilinear else A.upsample_nearest2d
        if func._overloadname == "vec":
            if b["output_size"] is not None:
                return fn(x, size=[int(v) for v in b["output_size"]], **kw)
            return fn(x, scale_factor=list(b["scale_factors"]), **kw)
        size = [int(v) for v in b["output_size"]]
        sh, sw = b.get("scales_h"), b.get("scales_w")
        if sh is not None and sw is not None:
            # F.interpolate(scale_factor=...) passes the size it computed and the scales; the kernel
            # maps indices with the scales, as qref does when given scale_factor
            if [int(x.shape[-2] * sh), int(x.shape[-1] * sw)] == size:
                return fn(x, scale_factor=[float(sh), float(sw)], **kw)
        if sh is not None or sw is not None:
            raise UnsupportedOpError(f"{func} with scales {sh}, {sw} not matching the output size {size} is not "
                                     f"reproduced by qref")
        return fn(x, size=size, **kw)

    return run


def _batch_norm(relu):
    def run(ctx, func, b):
        return A.batch_norm(b["qx"], weight=b["weight"], bias=b["bias"], mean=b["mean"], var=b["var"],
                            eps=_f(b["eps"]), scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]),
                            relu=relu)

    return run


def _contig(x: Any) -> Any:
    # the quantized norms read their input through expect_contiguous (qnormalization.cpp): a
    # channels_last input is first copied to contiguous, and so is the output
    return x if x.is_contiguous() else x.contiguous()


def _layer_norm(ctx, func, b):
    return A.layer_norm(_contig(b["input"]), normalized_shape=list(b["normalized_shape"]), weight=b["weight"], bias=b["bias"],
                        eps=_f(b["eps"]), scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]))


def _group_norm(ctx, func, b):
    return A.group_norm(_contig(b["input"]), num_groups=_i(b["num_groups"]), weight=b["weight"], bias=b["bias"],
                        eps=_f(b["eps"]), scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]))


def _instance_norm(ctx, func, b):
    return A.instance_norm(_contig(b["input"]), weight=b["weight"], bias=b["bias"], eps=_f(b["eps"]),
                           scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]))


def _linear_dynamic(relu):
    def run(ctx, func, b):
        w, bias = b["W_prepack"].unpack()
        return A.linear_dynamic(b["X"], w, bias, reduce_range=bool(b["reduce_range"]), relu=relu)

    return run


def _module_op(ctx, func, b):
    """conv / linear: the params of the module that issued the op (qref.from_torch, cached)."""
    if ctx.module is None or ctx.runner is None:
        raise UnsupportedOpError(f"{op_name(func)} called outside a quantized module: qref reads conv/linear "
                                 f"params from the module that issues the op")
    runner = ctx.runner(ctx.module)
    qargs = [v for v in b.values() if _is_q(v)]
    return runner(*qargs, isa=ctx.isa, threads=ctx.threads)


OPS: dict = {
    "aten::quantize_per_tensor": _quantize,
    "aten::dequantize": _dequantize,
    "quantized::add": _binary(A.add),
    "quantized::add_relu": _binary(A.add_relu),
    "quantized::mul": _binary(A.mul),
    "quantized::mul_relu": _binary(A.mul_relu),
    "quantized::add_scalar": _add_scalar(False),
    "quantized::add_scalar_relu": _add_scalar(True),
    "quantized::mul_scalar": lambda ctx, func, b: A.mul_scalar(b["qa"], _f(b["b"])),
    "quantized::mul_scalar_relu": lambda ctx, func, b: A.mul_scalar(b["qa"], _f(b["b"]), relu=True),
    "quantized::cat": _qcat(False),
    "quantized::cat_relu": _qcat(True),
    "aten::cat": _aten_cat,
    "aten::relu": _relu,
    "aten::relu_": _relu,
    "quantized::relu6": lambda ctx, func, b: A.relu6(b["qx"]),
    "aten::hardtanh": _hardtanh,
    "aten::hardtanh_": _hardtanh,
    "aten::clamp": _clamp,
    "aten::clamp_": _clamp,
    "aten::threshold": _threshold,
    "aten::threshold_": _threshold,
    "quantized::hardswish": _hardswish_q,
    "aten::hardswish": _hardswish_aten,
    "aten::hardswish_": _hardswish_aten,
    "aten::hardsigmoid": lambda ctx, func, b: A.hardsigmoid(b["self"]),
    "aten::hardsigmoid_": lambda ctx, func, b: A.hardsigmoid(b["self"]),
    "aten::sigmoid": lambda ctx, func, b: A.sigmoid(b["self"]),
    "aten::tanh": lambda ctx, func, b: A.tanh(b["self"]),
    "aten::gelu": lambda ctx, func, b: A.gelu(b["self"], approximate=b["approximate"]),
    "quantized::elu": lambda ctx, func, b: A.elu(
        b["self"], scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]), alpha=_f(b["alpha"]),
        coef=_f(b["scale"]), input_coef=_f(b["input_scale"])),
    "quantized::celu": lambda ctx, func, b: A.celu(
        b["self"], scale=_f(b["output_scale"]), zero_point=_i(b["output_zero_point"]), alpha=_f(b["alpha"])),
    "quantized::sigmoid": _sigmoid_q,
    "aten::leaky_relu": _leaky_aten,
    "aten::leaky_relu_": _leaky_aten,
    "quantized::leaky_relu": _leaky_q,
    "aten::quantized_max_pool2d": _max_pool2d,
    "aten::max_pool2d": _max_pool2d,
    "aten::quantized_max_pool1d": _max_pool1d,
    "aten::max_pool1d": _max_pool1d,
    "aten::avg_pool2d": _avg_pool2d,
    "aten::_adaptive_avg_pool2d": _adaptive(A.adaptive_avg_pool2d),
    "aten::adaptive_avg_pool2d": _adaptive(A.adaptive_avg_pool2d),
    "aten::_adaptive_avg_pool3d": _adaptive(A.adaptive_avg_pool3d),
    "aten::adaptive_avg_pool3d": _adaptive(A.adaptive_avg_pool3d),
    "aten::mean": _mean,
    "aten::upsample_nearest2d": _upsample(False),
    "aten::upsample_bilinear2d": _upsample(True),
    "quantized::batch_norm": _batch_norm(False),
    "quantized::batch_norm1d": _batch_norm(False),
    "quantized::batch_norm2d": _batch_norm(False),
    "quantized::batch_norm3d": _batch_norm(False),
    "quantized::batch_norm1d_relu": _batch_norm(True),
    "quantized::batch_norm2d_relu": _batch_norm(True),
    "quantized::batch_norm3d_relu": _batch_norm(True),
    "quantized::layer_norm": _layer_norm,
    "quantized::group_norm": _group_norm,
    "quantized::instance_norm": _instance_norm,
    "quantized::softmax": lambda ctx, func, b: A.softmax(b["qx"], dim=_i(b["dim"]), scale=_f(b["output_scale"]),
                                                         zero_point=_i(b["output_zero_point"])),
    "quantized::linear_dynamic": _linear_dynamic(False),
    "quantized::linear_relu_dynamic": _linear_dynamic(True),
}
for _n in ("conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu", "conv2d_add",
           "conv2d_add_relu", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear", "linear_relu",
           "linear_leaky_relu", "linear_tanh"):
    OPS["quantized::" + _n] = _module_op


def _under_qnnpack() -> bool:
    import torch

    return torch.backends.quantized.engine == "qnnpack"


def _qnnpack_or(aten_impl, qnnpack_impl):
    """ATen's kernel, or QNNPACK's where torch sends the op there: the current engine is "qnnpack"
    (torch reads it at call time) and qnnpack_impl accepts the arguments (None: not QNNPACK's case)."""
    def run(ctx, func, b):
        if _under_qnnpack():
            out = qnnpack_impl(func, b)
            if out is not None:
                return out
        return aten_impl(ctx, func, b)

    return run


def _qn_add(relu):
    def run(func, b):
        import torch

        if func._overloadname not in ("", "default"):
            return None
        qa, qb = b["qa"], b["qb"]
        # BinaryOps.cpp qadd: QNNPACK for quint8 operands of one shape
        if qa.dtype != torch.quint8 or qb.dtype != torch.quint8 or tuple(qa.shape) != tuple(qb.shape):
            return None
        return QN.add("add", qa, qb, _f(b["scale"]), _i(b["zero_point"]), relu)

    return run


def _qn_lut(kind, qparams):
    def run(func, b):
        import torch

        x = b.get("self", b.get("qx", b.get("input")))
        if x is None or x.dtype != torch.quint8:
            return None
        s, z = qparams(x, b)
        return QN.lut_op(kind, x, s, z)

    return run


for _k, _v in (("quantized::add", _qn_add(False)), ("quantized::add_relu", _qn_add(True)),
               ("aten::sigmoid", _qn_lut("sigmoid", lambda x, b: (1.0 / 256, 0))),
               ("aten::tanh", _qn_lut("tanh", lambda x, b: (2.0 / 256, 128))),
               ("aten::hardsigmoid", _qn_lut("hardsigmoid", lambda x, b: (1.0 / 256, 0))),
               ("aten::hardsigmoid_", _qn_lut("hardsigmoid", lambda x, b: (1.0 / 256, 0))),
               ("quantized::hardswish", _qn_lut("hardswish", lambda x, b: (_f(b["output_scale"]),
                                                                            _i(b["output_zero_point"])))),
               ("aten::hardswish", _qn_lut("hardswish", lambda x, b: (x.q_scale(), x.q_zero_point())))):
    if _k in OPS:
        OPS[_k] = _qnnpack_or(OPS[_k], _v)
MODULE_OPS = frozenset(k for k, v in OPS.items() if v is _module_op)
_INPLACE = frozenset(k for k in OPS if k.endswith("_") and k.startswith("aten::"))


def compute(func: Any, args: tuple, kwargs: dict, ctx: OpContext) -> Any:
    """The op computed by qref. Raises UnsupportedOpError where qref does not reproduce it."""
    name = op_name(func)
    impl = OPS.get(name)
    if impl is None:
        raise UnsupportedOpError(f"{name} on quantized tensors is not reproduced by qref")
    b = _bind(func, args, kwargs)
    try:
        return impl(ctx, func, b)
    except UnsupportedModuleError as e:
        raise UnsupportedOpError(f"{name}: {e}") from e


# ---------------------------------------------------------------------------- prepared modules


class _PreparedCache:
    """module -> params object, prepared once. An entry is valid while the module holds the very
    packed-params objects (and output qparams) it was prepared from: changing a quantized module's
    weights (set_weight_bias, load_state_dict, a new module) replaces those objects; the entry keeps
    them alive, so their ids cannot be reused by others. oneDNN kernel discovery is cached per input
    shape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()

    @staticmethod
    def _token(module: Any) -> tuple:
        p = getattr(module, "_packed_params", None)
        inner = getattr(p, "_packed_params", None)
        return (p, inner, getattr(module, "scale", None), getattr(module, "zero_point", None))

    @staticmethod
    def _same(a: tuple, b: tuple) -> bool:
        return len(a) == len(b) and all(x is y or (isinstance(x, (int, float)) and x == y) for x, y in zip(a, b))

    def get(self, module: Any, key: Any, make: Callable) -> Any:
        tok = self._token(module)
        with self._lock:
            ent = self._entries.get(module)
            if ent is not None and self._same(ent[0], tok) and key in ent[1]:
                return ent[1][key]
        val = make()
        with self._lock:
            ent = self._entries.get(module)
            if ent is None or not self._same(ent[0], tok):
                ent = (tok, {})
                self._entries[module] = ent
            ent[1][key] = val
        return val

    def clear(self) -> None:
        with self._lock:
            self._entries = weakref.WeakKeyDictionary()


PREPARED = _PreparedCache()


def prepared(module: Any, prepare: Callable = from_torch, key: Any = "runner") -> Any:
    """``prepare(module)``, computed once per module and weights (see _PreparedCache)."""
    return PREPARED.get(module, key, lambda: prepare(module))


def run_runner(module: Any, qx: Any) -> Any:
    """The params object that runs ``module`` on an input shaped like ``qx`` (oneDNN's kernel read
    once per shape)."""
    runner = prepared(module)
    if getattr(runner, "engine", "fbgemm") == "onednn" and hasattr(runner, "onednn_kernel"):
        runner = PREPARED.get(module, ("onednn", tuple(qx.shape), qx.q_scale(), qx.q_zero_point()),
                              lambda: _with_onednn_kernel(runner, module, qx))
    return runner


# ---------------------------------------------------------------------------- module stack


class _Tracker:
    """Per call: which module is running (global module hooks that act on their owner thread only),
    and which FX node."""

    def __init__(self, model: Any = None) -> None:
        self.thread = threading.get_ident()
        self.stack: list = []
        self.names: dict = {}
        self.node: Optional[str] = None
        self._handles: list = []
        self._qfunctional: dict = {}
        if model is not None:
            self._add_names(model)

    def _add_names(self, root: Any) -> None:
        for n, m in root.named_modules():
            self.names.setdefault(id(m), n or "(model)")

    def __enter__(self) -> "_Tracker":
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        def pre(mod, args):
            if threading.get_ident() == self.thread:
                if id(mod) not in self.names:
                    self._add_names(mod)
                self.stack.append(mod)

        def post(mod, args, out):
            if threading.get_ident() == self.thread and self.stack and self.stack[-1] is mod:
                self.stack.pop()

        self._handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, always_call=True)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def module(self) -> Any:
        return self.stack[-1] if self.stack else None

    def path(self, module: Any) -> str:
        return self.names.get(id(module), type(module).__name__)

    def qfunctional(self, parent: Any, scale: Any, zero_point: Any) -> Any:
        """QFunctional's add/cat/mul are methods (no hook fires): the child QFunctional of the
        issuing module whose output qparams the op uses."""
        kids = self._qfunctional.get(id(parent))
        if kids is None:
            kids = [m for m in parent.children() if type(m).__name__ == "QFunctional"]
            self._qfunctional[id(parent)] = kids
        if scale is None:  # add_scalar, mul_scalar: output qparams derived, not the module's
            return kids[0] if len(kids) == 1 else None
        match = [m for m in kids if float(m.scale) == float(scale) and int(m.zero_point) == int(zero_point)]
        return match[0] if len(match) == 1 else None


def _fx_interpreter(model: Any, tracker: _Tracker) -> Any:
    import torch

    class Interp(torch.fx.Interpreter):
        def run_node(self, n):
            tracker.node = n.name
            try:
                return super().run_node(n)
            finally:
                tracker.node = None

    return Interp(model)


def _call_model(model: Any, inputs: tuple, tracker: _Tracker) -> Any:
    import torch

    if isinstance(model, torch.fx.GraphModule):
        return _fx_interpreter(model, tracker).run(*inputs)
    return model(*inputs)


# ---------------------------------------------------------------------------- run mode


def _validate_model(fn: str, model: Any, inputs: tuple) -> None:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    check_inputs(fn, inputs)


def _dispatch_mode(handle: Callable) -> Any:
    """A TorchDispatchMode that runs layout-only ops as torch does and hands every other op to
    ``handle(func, name, args, kwargs)``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = op_name(func)
            if name in LAYOUT_OPS:
                return func(*args, **kwargs)
            return handle(func, name, args, kwargs)

    return Mode()


class _RunMode:
    """Every quantized op computed by qref."""

    def __new__(cls, tracker: _Tracker, isa: str, threads: Optional[int], memo: Optional[list] = None):
        seq = [0]

        def run_runner_for(module):
            return _RUNNER_HOOK(module)

        def handle(func, name, args, kwargs):
            if name in OPS and _quantized_call(name, args, kwargs):
                ctx = OpContext(tracker.module, isa, threads, run_runner_for)
                i = seq[0]
                seq[0] += 1
                try:
                    out = _recall(memo, i, name, args, kwargs, tracker.module)
                    if out is None:
                        out = compute(func, args, kwargs, ctx)
                except UnsupportedOpError:
                    raise
                except (ValueError, TypeError) as e:
                    raise UnsupportedOpError(f"{name} (issued by {_where(tracker)}): qref does not reproduce "
                                             f"this call: {e}") from e
                if name in _INPLACE:
                    args[0].copy_(out)
                    return args[0]
                return out
            if _touches_quantized(args, kwargs) or name.startswith("quantized::"):
                raise UnsupportedOpError(f"{name} (issued by {_where(tracker)}) on quantized tensors is not "
                                         f"reproduced by qref")
            out = func(*args, **kwargs)
            if _makes_quantized(out):
                raise UnsupportedOpError(f"{name} (issued by {_where(tracker)}) makes a quantized tensor "
                                         f"qref does not reproduce")
            return out

        return _dispatch_mode(handle)


def _where(tracker: _Tracker) -> str:
    mod = tracker.module
    where = tracker.path(mod) if mod is not None else "(top level)"
    return f"{where}, FX node {tracker.node}" if tracker.node else where


class _RunnerHook:
    """conv/linear params for a module, given the input (for oneDNN's kernel per shape)."""

    def __call__(self, module: Any) -> Callable:
        def runner(*qargs, isa="auto", threads=None):
            return run_runner(module, qargs[0])(*qargs, isa=isa, threads=threads)

        return runner


_RUNNER_HOOK = _RunnerHook()


@contextlib.contextmanager
def mode(isa: str = "auto", threads: Optional[int] = None):
    """``with qref.mode(): y = model(x)``: every quantized op inside the block is computed by qref
    (torch carries the graph and the layout ops); an op qref does not reproduce raises
    ``qref.UnsupportedOpError`` naming it."""
    tracker = _Tracker()
    with tracker, _RunMode(tracker, isa, threads):
        yield


def run(model: Any, *inputs: Any, isa: str = "auto", threads: Optional[int] = None, _memo: Optional[list] = None,
        compile: bool = False) -> Any:
    """``model(*inputs)`` with every quantized op computed by qref: returns what the model returns,
    bit for bit (float outputs included). ``isa``/``threads``: qref's conv/linear (as
    ``qref.conv2d``); ATen's ops follow the thread count torch runs with (torch.get_num_threads())."""
    if _onnx.is_onnx_model(model):  # an ONNX model: qref.onnx.run(model, feeds) (docs/onnxruntime.md)
        return _onnx.run(model, *inputs, **({} if isa == "auto" else {"host": isa}))
    import torch

    if compile:  # torchao PT2E as torch.compile runs it: docs/pt2e.md
        return _pt2e.run(model, *inputs, compile=True, isa=isa)
    _validate_model("run", model, inputs)
    tracker = _Tracker(model)
    with torch.no_grad(), onednn_lock(), tracker, _RunMode(tracker, isa, threads, _memo):
        return _call_model(model, inputs, tracker)


# ---------------------------------------------------------------------------- capture (check)


@dataclass(eq=False)
class OpCall:
    """One op on quantized tensors as torch ran it."""

    name: str  # module path or FX node (with [call n] for repeats)
    op: str  # "quantized::add_relu"
    module: Any  # issuing module (conv/linear: the quantized module)
    inputs: list  # the quantized tensor arguments (conv/linear rows)
    output: Any  # torch's output
    qref: Any = None  # qref's output (None: not computed)
    error: str = ""  # why qref did not compute it
    kind: str = "op"  # "op" or "module" (conv/linear: verified by the caller, keyed by module)


class _CaptureMode:
    def __new__(cls, tracker: _Tracker, on_call: Callable, isa: str, threads: Optional[int]):
        counts: dict = {}

        def label(func, args, kwargs, module_op: bool) -> tuple:
            mod = tracker.module
            name = op_name(func)
            short = name.split("::")[1]
            if tracker.node is not None and not module_op:
                lab = tracker.node
            elif mod is None:
                lab = short
            else:
                path = tracker.path(mod)
                if name.startswith("quantized::") and not module_op:
                    b = _bind(func, args, kwargs)
                    qf = tracker.qfunctional(mod, b.get("scale"), b.get("zero_point"))
                    if qf is not None:
                        lab = tracker.path(qf)
                        mod = qf
                    else:
                        lab = path if next(mod.children(), None) is None else (
                            f"{path}.{short}" if path != "(model)" else short)
                elif module_op or next(mod.children(), None) is None:
                    lab = path  # a leaf module (Conv2d, ReLU, Quantize, ...): the op it exists for
                else:
                    lab = f"{path}.{short}" if path != "(model)" else short
            counts[lab] = counts.get(lab, 0) + 1
            if counts[lab] > 1:
                lab = f"{lab}[call {counts[lab]}]"
            return lab, mod

        def handle(func, name, args, kwargs):
            if not _quantized_call(name, args, kwargs):
                out = func(*args, **kwargs)
                if _makes_quantized(out):
                    lab, mod = label(func, args, kwargs, False)
                    on_call(OpCall(lab, name, mod, [], out, error=f"{name} makes a quantized tensor qref does "
                                                                   f"not reproduce"), args, kwargs)
                return out
            module_op = name in MODULE_OPS
            lab, mod = label(func, args, kwargs, module_op)
            if module_op:
                out = func(*args, **kwargs)
                on_call(OpCall(lab, name, mod, _quantized_args(args), out, kind="module"), args, kwargs)
                return out
            got, err = None, ""
            versions = _versions(args, kwargs)
            try:  # before torch runs the op: an in-place op would change its input
                got = compute(func, args, kwargs, OpContext(mod, isa, threads, None))
            except UnsupportedOpError as e:
                err = str(e)
            except (ValueError, TypeError) as e:
                err = f"qref does not reproduce this call: {e}"
            except Exception as e:  # noqa: BLE001 - a row says what failed; the check goes on
                err = f"qref failed on this call: {type(e).__name__}: {e}"
            out = func(*args, **kwargs)
            on_call(OpCall(lab, name, mod, _quantized_args(args), out, qref=got, error=err), args, kwargs,
                    versions)
            return out

        return _dispatch_mode(handle)


def capture(model: Any, inputs: tuple, on_call: Callable, isa: str = "auto", threads: Optional[int] = None,
            memo: Optional[list] = None) -> Any:
    """Run ``model(*inputs)`` under torch; ``on_call(OpCall)`` for every op on quantized tensors
    (qref's own result of each non-module op attached). Returns the model's output. With ``memo``
    (a list), each op call's arguments and qref's result are recorded for ``run(..., _memo=memo)``."""
    import torch

    tracker = _Tracker(model)
    rec = (lambda c, *rest: on_call(c)) if memo is None else _recording(on_call, memo)
    with torch.no_grad(), onednn_lock(), tracker, _CaptureMode(tracker, rec, isa, threads):
        return _call_model(model, inputs, tracker)


# ---------------------------------------------------------------------------- the end-to-end memo
#
# qref.check runs the model twice: op by op under torch (each op recomputed by qref from torch's
# inputs), then end to end with qref's values. An op's qref result depends only on its arguments
# (bytes, memory format, qparams, the other arguments), so where the end-to-end run calls the
# same op with the same argument bytes as the op-by-op pass did, the result qref computed then is
# the result now: it is reused instead of recomputed. Any difference (other bytes, a layout, a
# tensor modified in place since, another op sequence) computes the op afresh.


@dataclass(eq=False)
class _MemoEntry:
    name: str
    args: tuple
    kwargs: dict
    versions: list
    out: Any
    module: Any = None  # conv/linear: the module whose params ran the op, and their objects then
    token: tuple = ()


def _tensors(args: tuple, kwargs: dict) -> list:
    import torch

    out = []
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(v for v in a if isinstance(v, torch.Tensor))
    return out


def _versions(args: tuple, kwargs: dict) -> list:
    return [t._version for t in _tensors(args, kwargs)]


def _recording(on_call: Callable, memo: list) -> Callable:
    def rec(c: OpCall, args: tuple = (), kwargs: Optional[dict] = None, versions: Optional[list] = None) -> None:
        on_call(c)
        kw = kwargs or {}
        mod = c.module if c.kind == "module" else None
        memo.append(_MemoEntry(c.op, args, kw, versions if versions is not None else _versions(args, kw),
                               None if c.error else c.qref, mod,
                               _PreparedCache._token(mod) if mod is not None else ()))

    return rec


def _same_value(a: Any, b: Any, same_module: bool = False) -> bool:
    import torch

    if a is b:
        return True
    if same_module and isinstance(b, torch.ScriptObject) and isinstance(a, torch.ScriptObject):
        return True  # the packed params of the same module, unchanged (checked by the caller)
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor) or a.dtype != b.dtype or a.shape != b.shape or a.stride() != b.stride():
            return False
        if b.is_quantized and (a.qscheme() != b.qscheme() or a.q_scale() != b.q_scale()
                               or a.q_zero_point() != b.q_zero_point()):
            return False
        if same_bytes(a, b):
            return True
        if b.is_quantized:
            return bool(torch.equal(a.int_repr(), b.int_repr()))
        return bool(np.array_equal(np.ascontiguousarray(a.detach().numpy()).view(np.uint8),
                                   np.ascontiguousarray(b.detach().numpy()).view(np.uint8)))
    if isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(b, (int, float, bool, str, type(None))) or type(b).__name__ in ("dtype", "memory_format"):
        return type(a) is type(b) and a == b
    return False  # packed params and other objects: only the very same object


def _recall(memo: Optional[list], i: int, name: str, args: tuple, kwargs: dict, module: Any) -> Any:
    """qref's result of op call ``i`` of the op-by-op pass, if this call has the same arguments."""
    if not memo or i >= len(memo):
        return None
    e = memo[i]
    if e.out is None or e.name != name or len(e.args) != len(args) or set(e.kwargs) != set(kwargs):
        return None
    same_module = False
    if e.module is not None:  # conv/linear: the same module, holding the same packed params
        if module is not e.module or not _PreparedCache._same(_PreparedCache._token(module), e.token):
            return None
        same_module = True
    if _versions(e.args, e.kwargs) != e.versions:  # torch's inputs were modified in place since
        return None
    if not all(_same_value(a, b, same_module) for a, b in zip(args, e.args)):
        return None
    if not all(_same_value(kwargs[k], e.kwargs[k], same_module) for k in kwargs):
        return None
    return e.out


# ---------------------------------------------------------------------------- comparison


def _dense(t: Any) -> bool:
    import torch

    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)) or (
        t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d))


def _raw(t: Any) -> np.ndarray:
    """A dense tensor's bytes in memory order, without a copy (quantized: the integer values)."""
    import torch

    if not t.is_quantized:
        return t.detach().reshape(-1).numpy().view(np.uint8) if t.is_contiguous() else \
            np.ascontiguousarray(t.detach().numpy()).reshape(-1).view(np.uint8)
    dt = torch.int8 if t.dtype == torch.qint8 else torch.uint8 if t.dtype == torch.quint8 else None
    if dt is None:
        raise TypeError(f"{t.dtype} tensors are not compared by bytes")
    n = t.numel()
    return torch.empty(0, dtype=dt).set_(t.untyped_storage(), t.storage_offset(), (n,), (1,)).numpy()


_SAME = threading.local()


@contextlib.contextmanager
def same_bytes_cache():
    """Within the block (one qref.check), same_bytes remembers the pairs of tensor objects it
    found equal, at their current versions: the end-to-end pass asks again about qref's result of
    an op and torch's (the op-by-op pass compared them) and gets the answer without a second pass
    over the bytes. The cache holds the tensors, so their ids are not reused while it lives; an
    in-place change bumps a tensor's version and misses it."""
    prev = getattr(_SAME, "pairs", None)
    _SAME.pairs = {}
    try:
        yield
    finally:
        _SAME.pairs = prev


def same_bytes(a: Any, b: Any) -> bool:
    """Both tensors dense with the same shape, strides, dtype and qparams, and equal bytes."""
    import torch

    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    pairs = getattr(_SAME, "pairs", None)
    key = None
    if pairs is not None:
        try:
            key = (id(a), a._version, id(b), b._version)
        except RuntimeError:  # inference tensors keep no version counter: not cached
            key = None
        hit = pairs.get(key) if key is not None else None
        if hit is not None and hit[0] is a and hit[1] is b:
            return True
    if not _same_bytes(a, b):
        return False
    if key is not None:
        pairs[key] = (a, b)
        pairs[(key[2], key[3], key[0], key[1])] = (b, a)
    return True


def _same_bytes(a: Any, b: Any) -> bool:
    import torch

    if a.dtype != b.dtype or a.shape != b.shape or a.stride() != b.stride() or not _dense(a) or not _dense(b):
        return False
    if b.is_quantized:
        if b.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric) or a.qscheme() != b.qscheme():
            return False
        if a.q_scale() != b.q_scale() or a.q_zero_point() != b.q_zero_point():
            return False
        if b.dtype not in (torch.quint8, torch.qint8):
            return False
    return _bytes_equal(_raw(a), _raw(b))


def _bytes_equal(x: np.ndarray, y: np.ndarray) -> bool:
    """Two 1-d byte arrays equal: compared 8 bytes at a time (uint64 views), then the rest."""
    if x.shape != y.shape:
        return False
    k = x.size // 8 * 8
    if k and not np.array_equal(x[:k].view(np.uint64), y[:k].view(np.uint64)):
        return False
    return bool(np.array_equal(x[k:], y[k:]))


@dataclass
class Compared:
    equal: bool
    numel: int = 0
    mismatches: int = 0
    max_abs_diff: int = 0
    first: Optional[tuple] = None
    torch_value: Any = None
    qref_value: Any = None
    reason: str = ""
    diff: Optional[np.ndarray] = None


def _fmt(t: Any) -> str:
    return "contiguous" if t.is_contiguous() else "channels_last" if t.dim() == 4 else "strided"


def compare(got: Any, expected: Any) -> Compared:
    """Bit-for-bit comparison of qref's and torch's results (tensors, quantized or float; lists;
    nested outputs)."""
    import torch
    from torch.utils._pytree import tree_flatten

    if isinstance(expected, torch.Tensor) and same_bytes(got, expected):
        return Compared(True, numel=expected.numel())
    gl, gs = tree_flatten(got)
    el, es = tree_flatten(expected)
    if gs != es or len(gl) != len(el):
        return Compared(False, reason=f"output structure differs: qref {gs} vs torch {es}")
    total = Compared(True)
    for g, e in zip(gl, el):
        if not isinstance(e, torch.Tensor):
            if g != e:
                return Compared(False, reason=f"qref gives {g!r}, torch {e!r}")
            continue
        if not isinstance(g, torch.Tensor) or g.dtype != e.dtype or tuple(g.shape) != tuple(e.shape):
            return Compared(False, numel=e.numel(), mismatches=e.numel(),
                            reason=f"qref gives {getattr(g, 'dtype', type(g).__name__)} "
                                   f"{tuple(getattr(g, 'shape', ()))}, torch {e.dtype} {tuple(e.shape)}")
        total.numel += e.numel()
        if e.is_quantized:
            if (g.q_scale(), g.q_zero_point()) != (e.q_scale(), e.q_zero_point()):
                total.equal = False
                total.reason = (f"output qparams differ: qref ({g.q_scale()}, {g.q_zero_point()}), torch "
                                f"({e.q_scale()}, {e.q_zero_point()})")
            a = g.int_repr().numpy().astype(np.int16)
            b = e.int_repr().numpy().astype(np.int16)
        else:
            a = np.ascontiguousarray(g.detach().numpy())
            b = np.ascontiguousarray(e.detach().numpy())
        if e.is_quantized and e.dim() == 4 and _fmt(g) != _fmt(e):
            total.equal = False
            total.reason = f"memory format differs: qref {_fmt(g)}, torch {_fmt(e)}"
        if e.is_quantized:
            bad = np.argwhere(a != b)
        else:  # float results: the bits, not the values
            bad = np.argwhere(a.view(f"u{a.itemsize}") != b.view(f"u{b.itemsize}"))
        if len(bad):
            total.equal = False
            total.mismatches += len(bad)
            if total.first is None:
                idx = tuple(int(v) for v in bad[0])
                total.first = idx
                total.torch_value = b[idx].item() if b.ndim else b.item()
                total.qref_value = a[idx].item() if a.ndim else a.item()
                if e.is_quantized:
                    total.max_abs_diff = int(np.abs(a - b).max())
                    total.diff = a - b
    return total
