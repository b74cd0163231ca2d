"""qref.conv2d and qref.quantize: the public numerics entry points.

conv2d validates its arguments (qref.common), asks torch's routing which engine runs the conv
(qref.routing) and runs it there (qref.engines.fbgemm / qref.engines.onednn); the owner of
immutable weights (Conv2dParams) passes a cache in which the packed weights are kept.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from .. import _core
from ..common.kernels import _resolve_kernel
from ..common.layout import _channels_last, _int_view, _wrap_output
from ..common.onednn_isa import resolve_class
from ..common.operands import (
    _Act,
    _activation,
    _bias_operand,
    _conv2d_geometry,
    _materialize,
    _output_quant,
    _weight_operand,
)
from ..common.validate import (
    INT32_MAX,
    MAX_ELEMENTS,
    check_bool,
    check_input_elements,
    check_int,
    check_scale,
    check_threads,
    is_torch_tensor,
)
from ..engines.fbgemm import conv2d as fbgemm_conv2d
from ..engines.fbgemm.conv2d import _conv_plan
from ..engines.onednn import conv2d as onednn_conv2d
from ..engines.onednn.kernel_names import checked_kernel
from ..engines.qnnpack import ops as qnnpack_ops
from ..routing import _no_onednn_kernel, _run_args, conv_runs_onednn, fbgemm_isa
from .prep_cache import ONESHOT, PrepCache


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    input_scale: Any = None,
    input_zero_point: Any = None,
    weight_scale: Any = None,
    weight_zero_point: Any = None,
    output_scale: Any,
    output_zero_point: Any,
    relu: bool = False,
    engine: str = "fbgemm",
    isa: str = "auto",
    kernel: str = "auto",
    threads: Optional[int] = None,
    return_intermediates: bool = False,
    _prepared_cache: Optional[dict] = None,
    onednn_kernel: Optional[str] = None,
    _fn: str = "conv2d",
    _cache_objs: Optional[tuple] = None,
    _make_weight: Optional[Callable[[], Any]] = None,
) -> Any:
    """Quantized conv2d, bit-exact with torch's fbgemm ``quantized::conv2d(_relu)``
    (``engine="x86"``/``"onednn"``: torch's routing and oneDNN; ``engine="qnnpack"``: torch's QNNPACK).

    Returns the same kind as ``input``: a torch quint8 tensor or a numpy uint8
    array (N, O, OH, OW). With ``return_intermediates=True`` returns
    ``(output, Intermediates)`` (computed by the scalar reference kernel).
    """
    fn = _fn  # "conv1d" when qref.conv1d runs through here (its (1, k) geometry)
    # the caller's own (weight, bias, weight_scale, weight_zero_point) that the operands here were
    # derived from (conv1d's), which key the cache; by default this call's own
    objs = (weight, bias, weight_scale, weight_zero_point) if _cache_objs is None else _cache_objs
    if not return_intermediates:
        # Conv2dParams passes its own cache of immutable weights; a one-shot call uses the
        # checked cache of prepared weights (qref.layers.prep_cache: never stale).
        out = _prepared_fast_path(ONESHOT if _prepared_cache is None else _prepared_cache, input, *objs, stride,
                                  padding, dilation, groups, input_scale,
                                  input_zero_point, output_scale, output_zero_point, relu, engine, isa, kernel,
                                  threads, onednn_kernel, fn)
        if out is not None:
            return out
        if _prepared_cache is None:
            _prepared_cache = ONESHOT
    if _make_weight is not None:
        # a caller's derived weight (conv3d's depth-folded, a transposed conv's flipped one), keyed in
        # the cache by _cache_objs: built only when the cache does not hold it prepared
        weight = _make_weight()
    # The scalar arguments first, so nothing is copied before they are known good.
    g, st, pd, dl = _conv2d_geometry(fn, groups, stride, padding, dilation)
    out_s, out_zp = _output_quant(fn, output_scale, output_zero_point)
    check_bool(fn, "relu", relu)
    # engine x86/onednn: isa may also name the oneDNN classes "amx", "avx512_core", "sse41" (qref.routing).
    # engine="qnnpack": torch's QNNPACK (one SSE2 path on every x86 CPU: isa does not change its bytes)
    qnnpack = engine == "qnnpack"
    kname, nthreads = _run_args(fn, return_intermediates, "fbgemm" if qnnpack else engine, isa, kernel, threads)
    isa_arg, onednn_kernel_arg = isa, onednn_kernel  # as the caller named them: the cache key's
    # The input is copied (to NHWC) only after every size below is known good.
    a_view, a_s, a_zp, a_torch = _activation(fn, input, input_scale, input_zero_point, 4, "(N, C, H, W)",
                                             materialize=False)
    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point)
    N, C, H, W = a_view.shape
    O, Cg, KH, KW = wt.oihw.shape
    if O == 0 or Cg == 0 or KH == 0 or KW == 0:
        # torch divides by zero (SIGFPE) for O=0 and reads uninitialised memory for C=0.
        raise ValueError(f"{fn}: weight.shape={(O, Cg, KH, KW)} (every weight dimension must be >= 1)")
    if C % g != 0:
        raise ValueError(f"{fn}: input has C={C} channels with groups={g} (channels must be divisible by groups)")
    if O % g != 0:
        raise ValueError(f"{fn}: weight has O={O} output channels with groups={g} (output channels must be "
                         f"divisible by groups)")
    if Cg * g != C:
        raise ValueError(f"{fn}: weight has {Cg} input channels per group but input has C={C} channels with "
                         f"groups={g} (input channels must equal groups * weight channels)")
    for dim, v in (("input.shape[0] (N)", N), ("input.shape[1] (C)", C), ("input.shape[2] (H)", H),
                   ("input.shape[3] (W)", W), ("weight.shape[0] (O)", O), ("padded height H+2*padding", H + 2 * pd[0]),
                   ("padded width W+2*padding", W + 2 * pd[1]), ("kernel span dilation*(kH-1)+1", dl[0] * (KH - 1) + 1),
                   ("kernel span dilation*(kW-1)+1", dl[1] * (KW - 1) + 1)):
        if v > INT32_MAX:
            raise ValueError(f"{fn}: {dim}={v} is too large (must be <= 2^31-1: fbgemm's conv_param_t holds a C int)")
    eff_h, eff_w = dl[0] * (KH - 1) + 1, dl[1] * (KW - 1) + 1
    if eff_h > H + 2 * pd[0] or eff_w > W + 2 * pd[1]:
        raise ValueError(f"{fn}: kernel {KH}x{KW} with dilation={dl} spans {eff_h}x{eff_w}, larger than the padded "
                         f"input {H + 2 * pd[0]}x{W + 2 * pd[1]} (kernel must fit in the padded input)")
    OH = (H + 2 * pd[0] - eff_h) // st[0] + 1
    OW = (W + 2 * pd[1] - eff_w) // st[1] + 1
    K = Cg * KH * KW
    if N * O * OH * OW > MAX_ELEMENTS or N * OH * OW * K > (1 << 62) or O * K > MAX_ELEMENTS:
        raise ValueError(f"{fn}: output shape {(N, O, OH, OW)} with K={K} is too large (at most 2^40 output "
                         f"elements and 2^62 multiply-adds, so index arithmetic stays inside int64)")
    if wt.per_channel and wt.scale.shape[0] != O:
        raise ValueError(f"{fn}: weight has {wt.scale.shape[0]} per-channel scales but O={O} output channels "
                         f"(one per output channel)")
    b = _bias_operand(fn, bias, O)
    if qnnpack:
        if onednn_kernel:
            raise ValueError(f"{fn}: onednn_kernel={onednn_kernel!r} with engine='qnnpack' (it names a oneDNN kernel)")
        return qnnpack_ops.conv2d(a_view, a_s, a_zp, a_torch, wt, b, st, pd, dl, g, out_s, out_zp, bool(relu),
                                  bool(return_intermediates))
    act = _Act(_materialize(a_view, channels_last=True), a_s, a_zp, a_torch)
    if conv_runs_onednn(engine, wt, g, isa):
        # oneDNN's arithmetic (docs/numerics.md §6, docs/onednn.md)
        onednn_kernel = checked_kernel(fn, onednn_kernel, "convolution", resolve_class(isa))
        if _prepared_cache is not None and not return_intermediates:
            # as for fbgemm below, Conv2dParams keeps the oneDNN conv packed once (a
            # _core.OnednnConv2d, which _core.conv2d_run also runs), so _prepared_fast_path serves
            # repeated calls.
            prep = onednn_conv2d.prepare(act, wt, b, st, pd, dl, g, out_s, out_zp, bool(relu), isa, onednn_kernel)
            return _remember_and_run(_prepared_cache, prep, act, nthreads, out_s, out_zp, input, input_scale,
                                     input_zero_point, *objs, stride,
                                     padding, dilation, groups, output_scale, output_zero_point, relu, engine,
                                     isa_arg, kname, onednn_kernel_arg, fn)
        return onednn_conv2d.run(act, wt, b, st, pd, dl, g, out_s, out_zp, bool(relu), isa, nthreads,
                                 bool(return_intermediates), act.from_torch, onednn_kernel)
    _no_onednn_kernel(fn, onednn_kernel, engine)
    if engine == "x86":
        isa = fbgemm_isa(isa)  # the fbgemm name of a machine named by a oneDNN class

    plan = _conv_plan((N, C, H, W), (O, Cg, KH, KW), st, pd, dl, g, isa)
    if _prepared_cache is not None and not return_intermediates:
        # the owner of immutable weights (Conv2dParams) keeps the weights transposed,
        # column-summed and packed for the kernel, one entry per input shape / quantization /
        # ISA semantics / kernel, so a call only runs the kernel.
        prep = fbgemm_conv2d.prepare(act, wt, b, st, pd, dl, g, out_s, out_zp, bool(relu), plan, kname)
        return _remember_and_run(_prepared_cache, prep, act, nthreads, out_s, out_zp, input, input_scale,
                                 input_zero_point, *objs, stride, padding,
                                 dilation, groups, output_scale, output_zero_point, relu, engine, isa_arg, kname,
                                 onednn_kernel_arg, fn)
    return fbgemm_conv2d.run(act, wt, b, st, pd, dl, g, out_s, out_zp, bool(relu), plan, kname, nthreads,
                             bool(return_intermediates))


def _remember_and_run(cache: Any, prep: Any, act: Any, nthreads: Optional[int], out_s: float, out_zp: int,
                      *key_args: Any) -> Any:
    """Keep a prepared conv (fbgemm's or oneDNN's) in the cache, then run it once."""
    x, input_scale, input_zero_point, weight, bias, weight_scale, weight_zero_point = key_args[:7]
    objs = (weight, bias, weight_scale, weight_zero_point)
    if isinstance(cache, PrepCache):
        cache.put(cache.key(objs, _call_key(x, input_scale, input_zero_point, *key_args[7:])), objs, prep)
    else:
        if len(cache) >= 16:
            cache.clear()
        # Remembered under the owner's own argument objects (immutable, owned by the cache's
        # owner) plus the input's shape and quantization: see _prepared_fast_path.
        cache[_owned_key(objs, x, input_scale, input_zero_point, *key_args[7:])] = (prep, objs)
    return _run_prepared(prep, act.nhwc, act.from_torch, out_s, out_zp, nthreads)


def _call_key(x: Any, input_scale: Any, input_zero_point: Any, stride: Any, padding: Any, dilation: Any,
              groups: Any, output_scale: Any, output_zero_point: Any, relu: Any, engine: str, isa: str,
              kname: str, onednn_kernel: Any, fn: str) -> tuple:
    """What a prepared conv2d depends on besides the weight-side objects: the other arguments
    by value, the input's kind, shape and quantization, the kernel (after QREF_KERNEL), the
    ISA name (whose meaning is fixed for the process: fbgemm reads its environment once) and, for
    torch's oneDNN engines, the named kernel and whether oneDNN runs more than one thread (an AMX
    plan depends on it)."""
    if is_torch_tensor(x):
        q = ("torch", x.q_scale(), x.q_zero_point())
    else:
        q = ("numpy", repr(input_scale), repr(input_zero_point))
    onednn = () if engine == "fbgemm" else (repr(onednn_kernel), onednn_conv2d.onednn_threads() > 1)
    return (fn, repr(stride), repr(padding), repr(dilation), repr(groups), repr(output_scale),
            repr(output_zero_point), bool(relu), engine, isa, kname, tuple(x.shape)) + q + onednn


def _owned_key(objs: tuple, x: Any, *args: Any) -> tuple:
    """A Conv2dParams cache key: the identity of its (read-only, owned) weight-side objects."""
    return tuple(id(o) for o in objs) + _call_key(x, *args)


def _run_prepared(prep: Any, nhwc: np.ndarray, torch_in: bool, out_s: float, out_zp: int,
                  nthreads: Optional[int]) -> Any:
    nt = _core.default_threads() if nthreads is None else nthreads
    if torch_in:
        # the kernel writes straight into the channels_last quint8 result (NHWC memory),
        # instead of a numpy array copied into a new tensor by _wrap_output (0.1-0.25 ms on a
        # 784 KB output: a quarter of ResNet-50 conv1's time).
        import torch

        N, OH, OW, O = _core.prepared_output_shape(prep)
        q = torch._empty_affine_quantized((N, O, OH, OW), scale=float(out_s), zero_point=int(out_zp),
                                          dtype=torch.quint8, memory_format=torch.channels_last)
        _core.conv2d_run_into(prep, nhwc, q.data_ptr(), N * OH * OW * O, nt)
        return q
    return _wrap_output(_core.conv2d_run(prep, nhwc, nt), False, out_s, out_zp)


def _prepared_fast_path(cache: Any, x: Any, weight: Any, bias: Any, weight_scale: Any, weight_zero_point: Any,
                        stride: Any, padding: Any, dilation: Any, groups: Any, input_scale: Any,
                        input_zero_point: Any, output_scale: Any, output_zero_point: Any, relu: Any, engine: Any,
                        isa: Any, kernel: Any, threads: Any, onednn_kernel: Any, fn: str) -> Any:
    """A repeated call on an input (quint8 tensor, or uint8 array with the same
    input_scale/input_zero_point) of a shape and quantization seen before, with weight-side
    arguments the cache still holds (a Conv2dParams' own, or unchanged ones: PrepCache): every
    argument was validated when the entry was made, so only the input's kind, the kernel name
    and the thread count are checked again. None: take the full path."""
    if not (isinstance(kernel, str) and isinstance(isa, str) and isinstance(engine, str)):
        return None
    torch_in = is_torch_tensor(x)
    if torch_in:
        import torch

        if not (input_scale is None and input_zero_point is None and x.dim() == 4 and x.is_quantized
                and x.dtype == torch.quint8 and x.qscheme() == torch.per_tensor_affine and x.device.type == "cpu"):
            return None
    elif not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and input_scale is not None
              and input_zero_point is not None):
        return None
    kname = _resolve_kernel("conv2d", kernel)
    objs = (weight, bias, weight_scale, weight_zero_point)
    args = (stride, padding, dilation, groups, output_scale, output_zero_point, relu, engine, isa, kname,
            onednn_kernel, fn)
    if isinstance(cache, PrepCache):
        prep = cache.get(cache.key(objs, _call_key(x, input_scale, input_zero_point, *args)), objs)
    else:
        hit = cache.get(_owned_key(objs, x, input_scale, input_zero_point, *args))
        prep = None if hit is None else hit[0]  # hit[1] keeps the keyed objects alive: ids never reused
    if prep is None:
        return None
    nthreads = check_threads("conv2d", threads)
    nhwc = _channels_last(_int_view(x)) if torch_in else _channels_last(x)
    return _run_prepared(prep, nhwc, torch_in, output_scale, output_zero_point, nthreads)


# ----------------------------------------------------------------------------- quantize


def quantize(x: Any, scale: Any, zero_point: Any) -> np.ndarray:
    """float32 -> quint8 exactly as torch.quantize_per_tensor does it on this build (docs/numerics.md §7):
    ``clamp(rne(fma(x, f32(1/f32(scale)), zp)), 0, 255)``. Returns a numpy uint8 array."""
    fn = "quantize"
    if is_torch_tensor(x):
        import torch

        if x.is_quantized or x.dtype != torch.float32:
            raise TypeError(f"{fn}: x.dtype={x.dtype} (must be float32; qref never casts silently)")
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: x has type {type(x).__name__} (must be a float32 numpy array or torch tensor)")
    if x.dtype != np.float32:
        raise TypeError(f"{fn}: x.dtype={x.dtype} (must be float32; qref never casts silently)")
    s = check_scale(fn, "scale", scale)
    zp = check_int(fn, "zero_point", zero_point, 0, 255, "quint8: must be in [0, 255]")
    check_input_elements(fn, "x", x.shape)
    # Any strides: one C-contiguous copy (a no-op when already contiguous); the input's shape,
    # a 0-d one included (ascontiguousarray makes it 1-d).
    return _core.quantize(np.ascontiguousarray(x), s, zp).reshape(x.shape)
