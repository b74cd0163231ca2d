"""oneDNN's int8 ops as torch.compile calls them for a PT2E model (``onednn::qconv_pointwise``,
``qconv2d_pointwise.binary``, ``qlinear_pointwise`` and ``.binary``), reproduced from their
runtime arguments: the exact compensated sum A from qref's oneDNN conv driver, then the post-op
chain of the core (``_core.pt2e_postops``, csrc/qref/onednn/requant.h)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .. import _core
from ..bridge.onednn_verbose import executed_kernels
from ..common.onednn_isa import resolve_class
from ..engines.onednn.kernel_names import is_amx_build
from ..layers.conv2d import conv2d
from .program import onednn_op

# Post-ops qref reproduces (gelu, swish: oneDNN's own approximations, csrc/qref/onednn/eltwise.h).
ELTWISE = ("none", "relu", "hardtanh", "hardswish", "gelu", "swish")
# gelu's post_op_algorithm -> the core's eltwise.
_GELU = {"none": "gelu_erf", "tanh": "gelu_tanh"}
# Kernel classes whose eltwise injector qref reproduces for gelu / swish (sse41 kernels replace
# each fused multiply-add by a multiply and an add).
_APPROX_CLASSES = ("amx", "vnni", "avx512_core", "avx2")
# Classes whose qlinear (oneDNN matmul) qref reproduces.
_QLINEAR_CLASSES = ("amx", "vnni", "avx512_core", "avx2")


class NotReproduced(Exception):
    """An op argument (post-op, dtype, kernel class) whose arithmetic qref has not reproduced."""


@dataclass
class Int8Op:
    """One int8 op call of the compiled program, with the runtime arguments torch gave it."""

    kind: str            # "qconv", "qconv_binary", "qlinear", "qlinear_binary"
    name: str            # torch op name, e.g. "qconv_pointwise.tensor"
    x: Any               # uint8 input (torch tensor)
    x_scale: float
    x_zp: int
    weight: np.ndarray   # int8 weight in torch's layout (O, C/g, *k) or (O, K)
    w_scale: np.ndarray  # float32 [O]
    bias: Optional[np.ndarray]
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    groups: int = 1
    output_scale: float = 1.0
    output_zp: int = 0
    output_dtype: Any = None   # torch dtype
    other: Any = None          # binary operand (torch tensor)
    other_scale: float = 1.0
    other_zp: int = 0
    binary: str = "none"       # "sum" / "add"
    alpha: float = 1.0
    eltwise: str = "none"
    scalars: tuple = ()
    algorithm: str = ""
    kernel: Optional[str] = None  # oneDNN's matmul implementation on an AMX host, once read (matmul_kernel)


def _f(v: Any) -> float:
    return float(v.item()) if hasattr(v, "item") else float(v)


def _i(v: Any) -> int:
    return int(v.item()) if hasattr(v, "item") else int(v)


def _dense_weight(packed: Any, linear: bool) -> np.ndarray:
    w = packed.to_dense() if getattr(packed, "is_mkldnn", False) else packed
    w = w.contiguous().numpy()
    return np.ascontiguousarray(w.T) if linear else w


def parse_call(name: str, args: list) -> Int8Op:
    """An ``Int8Op`` from one recorded call (op name without namespace, positional args)."""
    a = list(args)
    bias = None
    binary = ".binary" in name
    x, xs, xz, w, ws, wz = a[:6]
    i = 6
    other = None
    if binary:
        other = a[6]
        i = 7
    if name.startswith("qconv"):
        b, stride, padding, dilation, groups, os_, oz, odt = a[i:i + 8]
        rest = a[i + 8:]
        op = Int8Op("qconv_binary" if binary else "qconv", name, x, _f(xs), _i(xz), _dense_weight(w, False),
                    ws.detach().float().numpy().copy(), None, tuple(stride), tuple(padding), tuple(dilation),
                    int(groups), _f(os_), _i(oz), odt)
        if binary:
            op.other = other
            op.other_scale, op.other_zp, op.binary, op.alpha = _f(rest[0]), _i(rest[1]), rest[2], _f(rest[3] if rest[3] is not None else 1.0)
            op.eltwise, op.scalars, op.algorithm = rest[4] or "none", tuple(rest[5] or ()), rest[6] or ""
        else:
            op.eltwise, op.scalars, op.algorithm = rest[0] or "none", tuple(rest[1] or ()), rest[2] or ""
    else:
        b, os_, oz, odt = a[i:i + 4]
        rest = a[i + 4:]
        op = Int8Op("qlinear_binary" if binary else "qlinear", name, x, _f(xs), _i(xz), _dense_weight(w, True),
                    ws.detach().float().numpy().copy(), None, output_scale=_f(os_), output_zp=_i(oz), output_dtype=odt)
        if binary:
            op.other = other
            op.other_scale, op.other_zp, op.binary, op.alpha = _f(rest[0]), _i(rest[1]), rest[2], _f(rest[3])
            op.eltwise, op.scalars, op.algorithm = rest[4] or "none", tuple(rest[5] or ()), rest[6] or ""
        else:
            op.eltwise, op.scalars, op.algorithm = rest[0] or "none", tuple(rest[1] or ()), rest[2] or ""
    if b is not None:
        bias = b.detach().float().numpy().copy()
    op.bias = bias
    if op.eltwise == "":
        op.eltwise = "none"
    return op


def describe(op: Int8Op) -> str:
    post = [] if op.binary == "none" else [op.binary]
    if op.eltwise != "none":
        post.append(op.eltwise + (f"({op.algorithm})" if op.algorithm else ""))
    shape = "x".join(str(s) for s in op.weight.shape)
    out = str(op.output_dtype).replace("torch.", "")
    return f"{op.kind} w{shape}" + (f" g{op.groups}" if op.groups != 1 else "") + \
        (" +" + "+".join(post) if post else "") + f" -> {out}"


def unsupported_reason(op: Int8Op, cls: str) -> Optional[str]:
    import torch

    if op.eltwise not in ELTWISE:
        return (f"post-op {op.eltwise!r}{' (' + op.algorithm + ')' if op.algorithm else ''}: not reproduced "
                f"(qref reproduces {', '.join(ELTWISE[1:])})")
    if op.eltwise == "gelu" and op.algorithm not in _GELU:
        return f"gelu algorithm {op.algorithm!r}: not reproduced ('none' (erf) and 'tanh' are)"
    if op.eltwise in ("gelu", "swish") and cls not in _APPROX_CLASSES:
        return (f"post-op {op.eltwise!r} on oneDNN's {cls} kernels: their eltwise approximation is not reproduced "
                f"(the {', '.join(_APPROX_CLASSES)} classes' are)")
    if op.output_dtype not in (torch.uint8, torch.float32, torch.bfloat16):
        return f"output dtype {op.output_dtype}: not reproduced (uint8, float32 and bfloat16 are)"
    if op.binary not in ("none", "sum", "add"):
        return f"binary post-op {op.binary!r}: not reproduced (sum and add are)"
    if op.other is not None and op.other.dtype not in (torch.float32, torch.uint8):
        return f"binary operand dtype {op.other.dtype}: not reproduced (float32 and uint8 are)"
    if op.alpha != 1.0:
        return f"binary alpha {op.alpha}: not reproduced (1.0 is)"
    if op.kind.startswith("qlinear") and cls not in _QLINEAR_CLASSES:
        return (f"oneDNN's {cls} matmul kernels: their int8 arithmetic is not reproduced (the amx, vnni and "
                f"avx512_core classes' brg_matmul and the avx2 class's gemm:jit are)")
    if op.kind.startswith("qconv") and len(op.stride) not in (1, 2):
        return f"conv with {len(op.stride)} spatial dimensions: not reproduced (conv1d and conv2d are)"
    return None


def compensated_sum(op: Int8Op, isa: str) -> tuple:
    """(A as float32 [M, O], output shape in NHWC / row order): oneDNN's zero-point-compensated
    int32 sum, from qref's oneDNN conv driver (exact or int16-pair-saturating per kernel class)."""
    x = op.x.detach().contiguous().numpy()
    O = op.weight.shape[0]
    if op.kind.startswith("qlinear"):
        K = x.shape[-1]
        lead = x.shape[:-1]
        M = int(np.prod(lead)) if lead else 1
        x4 = x.reshape(M, K, 1, 1)
        w4 = op.weight.reshape(O, K, 1, 1)
        _, inter = conv2d(x4, w4, None, input_scale=op.x_scale, input_zero_point=op.x_zp,
                          weight_scale=np.ones(O), weight_zero_point=0, output_scale=1.0,
                          output_zero_point=0, engine="onednn", isa=isa, return_intermediates=True)
        return np.ascontiguousarray(inter.A.reshape(M, O)), tuple(lead) + (O,), inter
    conv1d = x.ndim == 3
    w = op.weight
    stride, padding, dilation = op.stride, op.padding, op.dilation
    if conv1d:
        x = x[:, :, None, :]
        w = w[:, :, None, :]
        stride, padding, dilation = (1,) + tuple(stride), (0,) + tuple(padding), (1,) + tuple(dilation)
    _, inter = conv2d(np.ascontiguousarray(x), np.ascontiguousarray(w), None, stride=tuple(stride),
                      padding=tuple(padding), dilation=tuple(dilation), groups=op.groups,
                      input_scale=op.x_scale, input_zero_point=op.x_zp, weight_scale=np.ones(O),
                      weight_zero_point=0, output_scale=1.0, output_zero_point=0, engine="onednn", isa=isa,
                      return_intermediates=True)
    A = inter.A  # (N, O, OH, OW)
    N, _, OH, OW = A.shape
    An = np.ascontiguousarray(A.transpose(0, 2, 3, 1)).reshape(-1, O)
    shape = (N, OH, OW, O) if not conv1d else (N, OW, O)
    return An, shape, inter


def _to_rows(t: Any, kind: str) -> np.ndarray:
    """A torch tensor in the op's output layout as [M, O] rows (channels last)."""
    arr = t.detach()
    if kind.startswith("qconv"):
        perm = (0,) + tuple(range(2, arr.dim())) + (1,)
        arr = arr.permute(*perm)
    arr = arr.contiguous()
    import torch

    if arr.dtype == torch.bfloat16:
        return arr.view(torch.int16).numpy().view(np.uint16).reshape(-1, arr.shape[-1])
    return arr.numpy().reshape(-1, arr.shape[-1])


def kernel_impl(op: Int8Op, cls: str) -> str:
    """Which oneDNN code computes the op (the core's ``impl``): "avx512" or "avx2" (the JIT
    kernels and their eltwise injector: brg_matmul / brgemm and jit convs, gemm:jit with its
    post-processing kernel on AVX2), or oneDNN's reference primitives, which the avx2 class runs
    for a bfloat16 output (ONEDNN_VERBOSE: matmul ref_int8:any -> "ref_matmul", convolution
    ref:any -> "ref_conv"): exact int32 sums, src and weight scales multiplied one after the
    other, post-ops in plain C++ with the C library's erff / tanhf / expf."""
    import torch

    if cls == "avx2":
        if op.output_dtype == torch.bfloat16:
            return "ref_matmul" if op.kind.startswith("qlinear") else "ref_conv"
        return "avx2"
    return "avx512"


def core_eltwise(op: Int8Op) -> tuple:
    """(the core's eltwise name, alpha, beta) for the op's unary post-op."""
    if op.eltwise == "hardtanh":
        lo, hi = (float(v) for v in op.scalars[:2])
        return "hardtanh", lo, hi
    if op.eltwise == "gelu":
        return _GELU[op.algorithm], 0.0, 0.0
    if op.eltwise == "swish":
        return "swish", 1.0, 0.0  # ideep's fuse_swish: alpha = 1
    return op.eltwise, 0.0, 0.0


@dataclass
class Chain:
    """What ``run_op`` feeds the core for one op: the compensated sums and how oneDNN's kernel
    for this class runs the post-op chain."""

    A: np.ndarray              # float32 [M, O]
    shape: tuple               # output shape in NHWC / row order
    impl: str                  # kernel_impl
    combined: bool             # one scale f32(x_scale * w_scale[o])
    eltwise: str               # the core's eltwise name
    alpha: float
    beta: float
    sum_fma: bool
    other: Optional[np.ndarray]  # binary operand as [M, O] rows


def chain(op: Int8Op, isa: str = "auto", combined: Optional[bool] = None) -> Chain:
    """The ``Chain`` of one op (raises ``NotReproduced`` for what qref does not reproduce)."""
    cls = resolve_class(isa)
    why = unsupported_reason(op, cls)
    if why:
        raise NotReproduced(why)
    impl = kernel_impl(op, cls)
    # oneDNN's reference primitives sum exactly and scale src and weights separately.
    ref = impl.startswith("ref")
    linear = op.kind.startswith("qlinear")
    if linear and cls == "amx":
        # an AMX build sums exactly, then applies one combined scale and compensates the zero point
        # in float (the amx class's conv driver); the avx512_core_vnni build is the vnni class's.
        amx = _amx_matmul(op)
        A, shape, inter = compensated_sum(op, "amx" if amx else "vnni")
        if combined is None:
            combined = amx
    else:
        A, shape, inter = compensated_sum(op, "vnni" if ref else isa)
    if combined is None:
        # brg_matmul (vnni, avx512_core) multiplies by the src and the weight scale in turn.
        brg = linear and cls in ("vnni", "avx512_core")
        combined = not ref and not brg and bool(getattr(getattr(inter, "plan", None), "combined_scale", False))
    other = None
    if op.binary != "none":
        other = np.ascontiguousarray(_to_rows(op.other, op.kind))
    eltwise, lo, hi = core_eltwise(op)
    # qlinear on AVX2 runs gemm:jit, whose post-processing kernel fuses a sum scale into the add.
    sum_fma = impl == "avx2" and op.kind.startswith("qlinear")
    return Chain(A, shape, impl, combined, eltwise, lo, hi, sum_fma, other)


def _torch_call(op: Int8Op) -> Any:
    """A thunk that runs the op through torch's own ``onednn.qlinear_pointwise`` (``.binary``) on
    the op's operands (a fresh copy of a binary sum's accumulator, which the op writes into)."""
    import torch

    w = torch.from_numpy(np.ascontiguousarray(op.weight))
    K = int(op.weight.shape[1])
    M = int(op.x.numel()) // K if K else 0
    packed = onednn_op("qlinear_prepack")(w, [M, K])
    ws = torch.from_numpy(np.ascontiguousarray(op.w_scale, np.float32))
    wz = torch.zeros(ws.numel(), dtype=torch.int32)
    b = None if op.bias is None else torch.from_numpy(np.ascontiguousarray(op.bias, np.float32))
    args = [op.x, op.x_scale, op.x_zp, packed, ws, wz]
    tail = [op.eltwise, list(op.scalars), op.algorithm]
    if op.binary == "none":
        fn = onednn_op("qlinear_pointwise").default
        rest = [b, op.output_scale, op.output_zp, op.output_dtype] + tail
        return lambda: fn(*args, *rest)
    fn = onednn_op("qlinear_pointwise").binary
    rest = [b, op.output_scale, op.output_zp, op.output_dtype, op.other_scale, op.other_zp, op.binary,
            op.alpha] + tail
    return lambda: fn(*args, op.other.clone(), *rest)


def matmul_kernel(op: Int8Op) -> Optional[str]:
    """The oneDNN matmul implementation this host's torch runs for a qlinear op (e.g.
    ``brg_matmul:avx10_1_512_amx``), read from oneDNN's verbose log of one more call with the op's
    operands; None where the log cannot be read. oneDNN picks it per shape (and thread count) by
    heuristics of its brgemm matmul, so qref asks instead of predicting."""
    if op.kernel is None:
        ks = executed_kernels(_torch_call(op), "matmul")
        op.kernel = ks[-1] if ks else None
    return op.kernel


def _amx_matmul(op: Int8Op) -> bool:
    """Whether an AMX host runs this qlinear op on an AMX build (combined scale, float zero-point
    compensation) rather than on the avx512_core_vnni build (exact sums, separate scales) that
    oneDNN picks for some shapes; raises NotReproduced where that cannot be known."""
    if resolve_class("auto") != "amx":
        raise NotReproduced("oneDNN's amx class runs a qlinear on an AMX matmul build or on its avx512_core_vnni "
                            "build, picked per shape and thread count on the AMX host itself; qref reads that choice from "
                            "torch's oneDNN log, which only an AMX host gives")
    k = matmul_kernel(op)
    if k is None:
        raise NotReproduced("oneDNN's amx class: which matmul kernel torch runs for this qlinear could not be read "
                            "from oneDNN's verbose log")
    return is_amx_build(k)


def postops(op: Int8Op, c: Chain, out_dtype: str, rows: Any = slice(None), cols: Any = slice(None)) -> np.ndarray:
    """The core's post-op chain over ``c.A[rows, cols]`` with ``out_dtype`` ("uint8", "float32" or
    "bfloat16" bits)."""
    A = np.ascontiguousarray(c.A[rows, cols])
    ws = np.ascontiguousarray(np.asarray(op.w_scale, np.float32)[cols])
    bias = None if op.bias is None else np.ascontiguousarray(np.asarray(op.bias, np.float32)[cols])
    other = None if c.other is None else np.ascontiguousarray(c.other[rows, cols])
    return _core.pt2e_postops(A, ws, bias, other, op.x_scale, c.combined, op.other_scale, op.other_zp, c.eltwise,
                              c.alpha, c.beta, out_dtype, op.output_scale, op.output_zp, c.impl, c.sum_fma)


def run_op(op: Int8Op, isa: str = "auto", combined: Optional[bool] = None) -> Any:
    """The op's output as a torch tensor of torch's dtype, shape and memory format."""
    import torch

    c = chain(op, isa, combined)
    odt = {torch.uint8: "uint8", torch.float32: "float32", torch.bfloat16: "bfloat16"}[op.output_dtype]
    out = postops(op, c, odt)
    t = torch.from_numpy(out.reshape(c.shape))
    if odt == "bfloat16":
        t = t.view(torch.int16).view(torch.bfloat16)
    if op.kind.startswith("qconv"):
        nd = t.dim()
        t = t.permute(0, nd - 1, *range(1, nd - 1))
    return t
