"""The torch bridge for linear, conv1d, conv3d and transposed convs.

``qref.from_torch`` dispatches here for ``nnq.Linear``, ``nniq.LinearReLU``, ``nnq.Conv1d``,
``nniq.ConvReLU1d``, ``nnq.Conv3d``, ``nniq.ConvReLU3d``, ``nnq.ConvTranspose1d``,
``nnq.ConvTranspose2d`` and ``nnq.ConvTranspose3d``. Each returns a frozen params object that runs
like ``Conv2dParams``: ``params(qx, isa=..., kernel=...)``.

Like ``Conv2dParams``, each params object keeps its weights prepared for the kernel: the first
call on an input shape / quantization / ISA / kernel runs the public function (which validates
every argument) and then packs the weights once (``_core.conv2d_prepare``
for the layers that run on the conv2d core, the rearranged weights for the N-d core); later calls
with the same key only convert the input's layout and run the kernel. The cached result is the
same arithmetic as the public function's (tests/test_linear.py, test_conv_nd.py,
test_transposed.py: ``test_*params_cache*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .. import _core
from ..common.kernels import _resolve_kernel
from ..common.layout import _int_view
from ..common.operands import _bias_operand, _weight_operand
from ..common.validate import check_int, check_reflect_padding, check_scale, check_threads, is_torch_tensor
from ..engines.fbgemm.conv2d import conv_plan
from ..engines.fbgemm.conv_nd import _pairs_survive_reordering, conv_nd_plan
from ..engines.fbgemm.linear import linear_plan
from ..layers.conv_nd import (
    _transposed_weight,
    conv1d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
)
from ..layers.defects import known_torch_defect
from ..layers.linear import linear
from .modules import (
    UnsupportedModuleError,
    WeightFields,
    module_engine,
    module_weights,
    packed_engine,
)
from .onednn_verbose import params_kernel

_CACHE_ENTRIES = 16  # per params object, as Conv2dParams: cleared when full


def _input_values(x: Any, input_scale: Any, input_zero_point: Any, ndim: Optional[int]):
    """(uint8 values in the input's own dimension order, quantization key, from_torch) of an input
    the cached path can take, else None (the public function then validates / rejects it)."""
    if is_torch_tensor(x):
        import torch

        if not (input_scale is None and input_zero_point is None and x.is_quantized and x.dtype == torch.quint8
                and x.qscheme() == torch.per_tensor_affine and x.device.type == "cpu" and x.numel() > 0
                and (ndim is None or x.dim() == ndim)):
            return None
        return _int_view(x), ("torch", x.q_scale(), x.q_zero_point()), True
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.size > 0 and (ndim is None or x.ndim == ndim)
            and input_scale is not None and input_zero_point is not None):
        return None
    return x, ("numpy", type(input_scale).__name__, repr(input_scale), type(input_zero_point).__name__,
               repr(input_zero_point)), False


def _channels_last(v: np.ndarray) -> np.ndarray:
    """(N, C, *S) uint8 -> C-contiguous (N, *S, C); no copy when it already is (channels_last torch
    tensors, what fbgemm's ops return), else the tiled byte transpose (~10x numpy's)."""
    t = v.transpose((0,) + tuple(range(2, v.ndim)) + (1,))
    if t.flags.c_contiguous:
        return t
    v = np.ascontiguousarray(v)
    N, C = v.shape[:2]
    S = int(np.prod(v.shape[2:], dtype=np.int64))
    return _core.channels_transpose(v.reshape(N, C, S, 1), True).reshape(t.shape)


def _wrap_channels_last(out_cl: np.ndarray, as_torch: bool, scale: float, zero_point: int) -> Any:
    """(N, *S, O) uint8 -> the caller's kind, (N, O, *S): a channels-last strided quint8 tensor (as
    fbgemm returns, no copy) or a C-contiguous numpy array."""
    nd = out_cl.ndim - 2
    if as_torch:
        import torch

        # quantize the contiguous array, then permute the quantized tensor (a view): handing
        # _make_per_tensor_quantized_tensor a permuted 3-d (N, O, L) tensor, which has no
        # channels-last memory format, makes it copy to contiguous first (~1 ms for 100 KB, more
        # than a small conv1d's kernel)
        q = torch._make_per_tensor_quantized_tensor(torch.from_numpy(out_cl), scale, zero_point)
        return q.permute(0, nd + 1, *range(1, nd + 1))
    N, O = out_cl.shape[0], out_cl.shape[-1]
    S = int(np.prod(out_cl.shape[1:-1], dtype=np.int64))
    r = _core.channels_transpose(np.ascontiguousarray(out_cl).reshape(N, S, 1, O), False)
    return r.reshape((N, O) + out_cl.shape[1:-1])


def _input_quant(fn: str, qkey: tuple) -> tuple:
    """(input scale, zero point) as the public functions read them (already validated there)."""
    if qkey[0] == "torch":
        return float(qkey[1]), int(qkey[2])
    return None, None


class _Entry:
    """One prepared layer: run(values in input order, threads) -> output values (N, *S, O)."""

    __slots__ = ("run", "out_scale", "out_zp", "keep")

    def __init__(self, run: Callable, out_scale: float, out_zp: int, keep: Any = None) -> None:
        self.run = run
        self.out_scale = out_scale
        self.out_zp = out_zp
        self.keep = keep

# torch class name -> (qref kind, relu fused)
MODULE_KINDS = {
    "Linear": ("linear", False),
    "LinearReLU": ("linear", True),
    "Conv1d": ("conv1d", False),
    "ConvReLU1d": ("conv1d", True),
    "Conv3d": ("conv3d", False),
    "ConvReLU3d": ("conv3d", True),
    "ConvTranspose1d": ("conv_transpose1d", False),
    "ConvTranspose2d": ("conv_transpose2d", False),
    "ConvTranspose3d": ("conv_transpose3d", False),
}
_RELU_NAMES = ("LinearReLU", "ConvReLU1d", "ConvReLU3d")


@dataclass(frozen=True, eq=False)
class _LayerParams(WeightFields):
    """Everything fbgemm uses of one quantized layer, as plain numbers."""

    output_scale: float
    output_zero_point: int
    relu: bool
    module_type: str
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    output_padding: tuple = ()
    groups: int = 1
    padding_mode: str = "zeros"
    # whose arithmetic torch's packed weights run: "fbgemm", or "onednn" for a module packed for
    # oneDNN (the default "x86" engine on an AVX512-VNNI host, or "onednn"; qref.engines.onednn.nd)
    engine: str = "fbgemm"
    # the oneDNN implementation torch ran for this layer (qref.check reads it from oneDNN's verbose
    # log for the recorded input; "" = qref's shape rules decide)
    onednn_kernel: str = ""

    # prepared weights per input shape / quantization / ISA / kernel (see module doc)
    _prepared: Any = field(default=None, init=False, repr=False, compare=False)
    # the torch module from_torch read (oneDNN-packed: asked which kernel oneDNN runs per input;
    # not pickled)
    _module: Any = field(default=None, init=False, repr=False, compare=False)

    kind = ""
    _in_ndim: Optional[int] = None  # the input's ndim the cached path takes (None: any)

    def __setstate__(self, d: dict) -> None:
        # An unpickled array carries its own (equal, not identical) dtype object, which _core's
        # dtype check rejects: view the arrays with numpy's own dtype again (read-only as before).
        d = dict(d)
        for name in ("weight", "weight_scale", "weight_zero_point", "bias"):
            a = d.get(name)
            if isinstance(a, np.ndarray):
                a = a.view(np.dtype(a.dtype.type))
                a.setflags(write=False)
                d[name] = a
        d["_prepared"] = {}
        self.__dict__.update(d)

    def _cached_call(self, x: Any, input_scale: Any, input_zero_point: Any, isa: Any, kernel: Any, threads: Any,
                     full: Callable[[], Any], extra: tuple = ()) -> Any:
        """The cached path (module doc); ``full`` runs the public function."""
        if not (isinstance(isa, str) and isinstance(kernel, str)):
            return full()
        got = _input_values(x, input_scale, input_zero_point, self._in_ndim)
        if got is None:
            return full()
        v, qkey, from_torch = got
        try:
            kname = _resolve_kernel(self.kind, kernel)
        except (TypeError, ValueError):
            return full()
        key = (tuple(v.shape), qkey, isa, kname, self.engine, self.onednn_kernel) + extra
        ent = self._prepared.get(key)
        if ent is None:
            res = full()  # validates every argument; a bad one raises here, before any entry is made
            if len(self._prepared) >= _CACHE_ENTRIES:
                self._prepared.clear()
            a_s, a_zp = _input_quant(self.kind, qkey)
            if a_s is None:
                a_s = check_scale(self.kind, "input_scale", input_scale)
                a_zp = check_int(self.kind, "input_zero_point", input_zero_point, 0, 255)
            # oneDNN-packed layers take the public function every call (no prepared entry yet)
            self._prepared[key] = (self.engine == "fbgemm" and
                                   self._prepare(tuple(v.shape), a_s, a_zp, isa, kname, *extra)) or False
            return res
        if ent is False:  # a problem the cached path does not take (e.g. intermediates-only paths)
            return full()
        n = check_threads(self.kind, threads)
        out = ent.run(v, _core.default_threads() if n is None else n)
        return self._wrap(out, from_torch, ent.out_scale, ent.out_zp)

    def _wrap(self, out: np.ndarray, from_torch: bool, scale: float, zero_point: int) -> Any:
        return _wrap_channels_last(out, from_torch, scale, zero_point)

    def _prepare(self, shape: tuple, a_s: float, a_zp: int, isa: str, kname: str, *extra) -> Optional[_Entry]:
        return None

    def _operands(self, fn: str, ndim: int):
        """The weight (qref.common.operands._Weight), bias (float32 or None) and output quantization, as the
        public functions read them."""
        wt = _weight_operand(fn, self.weight, *self._weight_args(), ndim=ndim)
        return wt, wt.oihw, check_scale(fn, "output_scale", self.output_scale), int(self.output_zero_point)

    def _prepare_conv2d(self, x4_shape: tuple, w_ohwi: np.ndarray, wt: Any, O: int, st, pd, dl, g, a_s, a_zp,
                        out_s, out_zp, saturate: bool, kname: str):
        """_core.conv2d_prepare for an NHWC input of x4_shape (the bias as the public functions
        pass it)."""
        b = _bias_operand(self.kind, self.bias, O)
        w_ohwi = np.ascontiguousarray(w_ohwi)
        return _core.conv2d_prepare(np.empty(x4_shape, np.uint8), w_ohwi, b, tuple(st), tuple(pd), tuple(dl),
                                    int(g), a_s, a_zp, wt.scale, wt.zero_point, wt.per_channel, out_s, out_zp,
                                    bool(self.relu), bool(saturate), kname)

    def _prepare_nd(self, wt: Any, w_cl: np.ndarray, O: int, st, pd, dl, op, g, transposed: bool, sd: int, a_s,
                    a_zp, out_s, out_zp, plan, reproduce_defects: bool, kname: str, to_nd: Callable) -> _Entry:
        """The N-d core (_core.conv_nd_ndhwc, as qref.engines.fbgemm.conv_nd._run_nd calls it) with the weights
        rearranged once; to_nd maps the channels-last input to (N, D, H, W, C)."""
        b = _bias_operand(self.kind, self.bias, O)
        w_cl = np.ascontiguousarray(w_cl)
        relu = bool(self.relu) and not transposed
        args = (list(st), list(pd), list(dl), list(op), int(g), bool(transposed), sd, a_s, a_zp, wt.scale,
                wt.zero_point, wt.per_channel, out_s, out_zp, relu, plan.path, plan.saturates,
                bool(reproduce_defects))

        def run(v: np.ndarray, threads: int) -> np.ndarray:
            out = _core.conv_nd_ndhwc(to_nd(_channels_last(v)), w_cl, b, *args, threads, False, kname)
            return out if sd == 3 else out[:, 0]

        return _Entry(run, out_s, out_zp)

    def _call_kwargs(self, qx: Any, input_scale: Any, input_zero_point: Any, isa: Any, kernel: Any, threads: Any,
                     return_intermediates: Any) -> dict:
        """The keyword arguments of the layer's public function that every params call passes alike:
        the weight and output quantization, the engine and the oneDNN kernel torch runs for this
        input (params_kernel), and the call's own isa / kernel / threads / return_intermediates."""
        ws, wz = self._weight_args()
        return dict(weight_scale=ws, weight_zero_point=wz, output_scale=self.output_scale,
                    output_zero_point=self.output_zero_point, isa=isa, kernel=kernel, threads=threads,
                    return_intermediates=return_intermediates, engine=self.engine,
                    onednn_kernel=params_kernel(self, qx, isa, input_scale, input_zero_point))

    def _pad_input(self, qx: Any, input_scale: Any, input_zero_point: Any):
        """Non-zero padding modes pad the quantized input first, as torch's modules do."""
        if self.padding_mode == "zeros" or not self.padding:
            return qx, input_scale, input_zero_point, self.padding
        shape = tuple(getattr(qx, "shape", ()))
        if len(shape) != 2 + len(self.padding):
            return qx, input_scale, input_zero_point, self.padding  # the layer's function refuses the input
        check_reflect_padding(self.kind, self.padding, shape)
        pads = []
        for p in reversed(self.padding):
            pads += [p, p]
        if is_torch_tensor(qx):
            import torch.nn.functional as F

            return F.pad(qx, tuple(pads), mode=self.padding_mode), None, None, (0,) * len(self.padding)
        width = ((0, 0), (0, 0)) + tuple((p, p) for p in self.padding)
        return np.pad(qx, width, mode="reflect"), input_scale, input_zero_point, (0,) * len(self.padding)

    def _planned_input(self, input_shape: Any) -> tuple:
        """(input shape, padding) of the conv the layer runs on an input of ``input_shape``: a
        non-zero padding mode pads the input itself (_pad_input), and the conv then has none."""
        shape = tuple(int(v) for v in input_shape)
        if self.padding_mode == "zeros":
            return shape, tuple(self.padding)
        return shape[:2] + tuple(n + 2 * p for n, p in zip(shape[2:], self.padding)), (0,) * len(self.padding)

    def known_torch_defect(self, input_shape: Any, *, first_input_shape: Any = None,
                           input_zero_point: Optional[int] = None, isa: str = "auto") -> Optional[str]:
        return known_torch_defect(self, input_shape, first_input_shape=first_input_shape,
                                  input_zero_point=input_zero_point, isa=isa)

    def plan(self, input_shape: Any, isa: str = "auto"):
        """The fbgemm path and saturation (``qref.ConvPlan``) of this layer for that input shape."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class LinearParams(_LayerParams):
    """``torch.ao.nn.quantized.Linear`` / ``LinearReLU``: weight (O, K)."""

    kind = "linear"

    def plan(self, input_shape: Any, isa: str = "auto"):
        return linear_plan(isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False) -> Any:
        def full():
            return linear(qx, self.weight, self.bias, input_scale=input_scale, input_zero_point=input_zero_point,
                          relu=self.relu, **self._call_kwargs(qx, input_scale, input_zero_point, isa, kernel, threads, return_intermediates))

        if return_intermediates:
            return full()
        return self._cached_call(qx, input_scale, input_zero_point, isa, kernel, threads, full)

    def _prepare(self, shape: tuple, a_s: float, a_zp: int, isa: str, kname: str) -> Optional[_Entry]:
        # qref.linear: the (M, K) rows as an NHWC image (M, 1, 1, K) of fbgemm's pointwise conv
        wt, w, out_s, out_zp = self._operands("linear", 2)
        O, K = w.shape
        lead = shape[:-1]
        M = int(np.prod(lead, dtype=np.int64))
        prep = self._prepare_conv2d((M, 1, 1, K), w.reshape(O, 1, 1, K), wt, O, (1, 1), (0, 0), (1, 1), 1, a_s,
                                    a_zp, out_s, out_zp, linear_plan(isa).saturates, kname)

        def run(v: np.ndarray, threads: int) -> np.ndarray:
            return _core.conv2d_run(prep, np.ascontiguousarray(v).reshape(M, 1, 1, K), threads).reshape(lead + (O,))

        return _Entry(run, out_s, out_zp, prep)

    def _wrap(self, out: np.ndarray, from_torch: bool, scale: float, zero_point: int) -> Any:
        if from_torch:
            import torch

            return torch._make_per_tensor_quantized_tensor(torch.from_numpy(out), scale, zero_point)
        return out


@dataclass(frozen=True, eq=False)
class Conv1dParams(_LayerParams):
    """``nnq.Conv1d`` / ``nniq.ConvReLU1d``: weight (O, C/groups, k)."""

    kind = "conv1d"

    def plan(self, input_shape: Any, isa: str = "auto"):
        (N, C, L), (p,) = self._planned_input(input_shape)
        O, Cg, k = self.weight.shape
        return conv_plan((N, C, 1, L), (O, Cg, 1, k), (1, self.stride[0]), (0, p), (1, self.dilation[0]),
                         self.groups, isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False) -> Any:
        x, s, z, pad = self._pad_input(qx, input_scale, input_zero_point)

        def full():
            return conv1d(x, self.weight, self.bias, stride=self.stride, padding=pad, dilation=self.dilation,
                          groups=self.groups, input_scale=s, input_zero_point=z, relu=self.relu,
                          **self._call_kwargs(qx, input_scale, input_zero_point, isa, kernel, threads, return_intermediates))

        if return_intermediates:
            return full()
        return self._cached_call(x, s, z, isa, kernel, threads, full, (tuple(pad),))

    _in_ndim = 3

    def _prepare(self, shape: tuple, a_s: float, a_zp: int, isa: str, kname: str, pad: tuple) -> Optional[_Entry]:
        # qref.conv1d: conv2d on (N, C, 1, L) with kernel (1, k) (torch's QConv1dInt8)
        wt, w, out_s, out_zp = self._operands("conv1d", 3)
        N, C, L = shape
        O, Cg, k = w.shape
        st, pd, dl = (1, self.stride[0]), (0, pad[0]), (1, self.dilation[0])
        plan = conv_plan((N, C, 1, L), (O, Cg, 1, k), st, pd, dl, self.groups, isa)
        prep = self._prepare_conv2d((N, 1, L, C), w.transpose(0, 2, 1)[:, None], wt, O, st, pd, dl, self.groups,
                                    a_s, a_zp, out_s, out_zp, plan.saturates, kname)

        def run(v: np.ndarray, threads: int) -> np.ndarray:
            out = _core.conv2d_run(prep, _channels_last(v).reshape(N, 1, L, C), threads)
            return out.reshape(N, out.shape[2], O)

        return _Entry(run, out_s, out_zp, prep)


@dataclass(frozen=True, eq=False)
class Conv3dParams(_LayerParams):
    """``nnq.Conv3d`` / ``nniq.ConvReLU3d``: weight (O, C/groups, kD, kH, kW)."""

    kind = "conv3d"

    def plan(self, input_shape: Any, isa: str = "auto"):
        shape, pad = self._planned_input(input_shape)
        return conv_nd_plan(shape, self.weight.shape, self.stride, pad, self.dilation, self.groups, isa=isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False,
                 reproduce_defects: bool = False) -> Any:
        x, s, z, pad = self._pad_input(qx, input_scale, input_zero_point)

        def full():
            return conv3d(x, self.weight, self.bias, stride=self.stride, padding=pad, dilation=self.dilation,
                          groups=self.groups, input_scale=s, input_zero_point=z, relu=self.relu,
                          reproduce_defects=reproduce_defects, **self._call_kwargs(qx, input_scale, input_zero_point, isa, kernel, threads, return_intermediates))

        if return_intermediates or not isinstance(reproduce_defects, (bool, np.bool_)):
            return full()
        return self._cached_call(x, s, z, isa, kernel, threads, full, (tuple(pad), bool(reproduce_defects)))

    _in_ndim = 5

    def _prepare(self, shape: tuple, a_s: float, a_zp: int, isa: str, kname: str, pad: tuple,
                 reproduce_defects: bool) -> Optional[_Entry]:
        # qref.conv3d's choice: the conv2d core on the depth-gathered problem, or the N-d core
        wt, w, out_s, out_zp = self._operands("conv3d", 5)
        N, C, D, H, W = shape
        O, Cg, KD, KH, KW = w.shape
        st, pd, dl, g = tuple(self.stride), tuple(pad), tuple(self.dilation), int(self.groups)
        plan = conv_nd_plan(shape, w.shape, st, pd, dl, g, isa=isa)
        if not (kname != "scalar" and plan.path != "depthwise" and not reproduce_defects
                and _pairs_survive_reordering(plan, Cg, KD * KH * KW)):
            return self._prepare_nd(wt, w.transpose(0, 2, 3, 4, 1), O, st, pd, dl, (0, 0, 0), g, False, 3, a_s,
                                    a_zp, out_s, out_zp, plan, reproduce_defects, kname, lambda x: x)
        # qref.engines.fbgemm.conv_nd._conv3d_via_conv2d: one conv2d over N*OD images whose channels are (g, kd, c)
        OD = (D + 2 * pd[0] - dl[0] * (KD - 1) - 1) // st[0] + 1
        plain = KD == 1 and st[0] == 1 and pd[0] == 0
        x4_shape = (N * D, H, W, C) if plain else (N * OD, H, W, g * KD * Cg)
        prep = self._prepare_conv2d(x4_shape, w.transpose(0, 3, 4, 2, 1).reshape(O, KH, KW, KD * Cg), wt, O,
                                    st[1:], pd[1:], dl[1:], g, a_s, a_zp, out_s, out_zp, plan.saturates, kname)
        # per depth tap kd: the output depths od whose input depth od*s - p + kd*dl is inside
        spans = []
        for kd in range(KD):
            first = [od for od in range(OD) if 0 <= od * st[0] - pd[0] + kd * dl[0] < D]
            spans.append((first[0], first[-1] + 1) if first else (0, 0))

        def run(v: np.ndarray, threads: int) -> np.ndarray:
            cl = _channels_last(v)
            if plain:
                x4 = cl.reshape(x4_shape)
            else:
                x7 = np.empty((N, OD, H, W, g, KD, Cg), np.uint8)
                xr = cl.reshape(N, D, H, W, g, Cg)
                for kd, (o0, o1) in enumerate(spans):
                    if o0 > 0:
                        x7[:, :o0, :, :, :, kd] = a_zp
                    if o1 < OD:
                        x7[:, o1:, :, :, :, kd] = a_zp
                    if o1 > o0:
                        i0 = o0 * st[0] - pd[0] + kd * dl[0]
                        x7[:, o0:o1, :, :, :, kd] = xr[:, i0:i0 + (o1 - o0 - 1) * st[0] + 1:st[0]]
                x4 = x7.reshape(x4_shape)
            out = _core.conv2d_run(prep, x4, threads)
            return out.reshape((N, OD) + out.shape[1:])

        return _Entry(run, out_s, out_zp, prep)


@dataclass(frozen=True, eq=False)
class ConvTransposeParams(_LayerParams):
    """``nnq.ConvTranspose1d/2d/3d``: weight (C, O/groups, k...), per-tensor."""

    kind = "conv_transpose"

    def plan(self, input_shape: Any, isa: str = "auto"):
        shape = tuple(int(v) for v in input_shape)
        IC, OCg = self.weight.shape[:2]
        g = self.groups
        ks = tuple(self.weight.shape[2:])
        st, pd, dl = self.stride, self.padding, self.dilation
        if self.weight.ndim == 3:  # conv_transpose1d runs as 2D with H = 1
            shape, ks = shape[:2] + (1,) + shape[2:], (1,) + ks
            st, pd, dl = (1,) + tuple(st), (0,) + tuple(pd), (1,) + tuple(dl)
        return conv_nd_plan(shape, (OCg * g, IC // g) + ks, st, pd, dl, g, transposed=True, isa=isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False,
                 reproduce_defects: bool = False) -> Any:
        fn = {3: conv_transpose1d, 4: conv_transpose2d, 5: conv_transpose3d}[self.weight.ndim]

        def full():
            return fn(qx, self.weight, self.bias, stride=self.stride, padding=self.padding,
                      output_padding=self.output_padding, groups=self.groups, dilation=self.dilation,
                      input_scale=input_scale, input_zero_point=input_zero_point,
                      reproduce_defects=reproduce_defects, **self._call_kwargs(qx, input_scale, input_zero_point, isa, kernel, threads, return_intermediates))

        # the cached path: conv_transpose2d (1d/3d always take the public function)
        if return_intermediates or self.weight.ndim != 4 or not isinstance(reproduce_defects, (bool, np.bool_)):
            return full()
        return self._cached_call(qx, input_scale, input_zero_point, isa, kernel, threads, full,
                                 (bool(reproduce_defects),))

    _in_ndim = 4

    def _prepare(self, shape: tuple, a_s: float, a_zp: int, isa: str, kname: str,
                 reproduce_defects: bool) -> Optional[_Entry]:
        # qref.conv_transpose2d's choice: the conv2d core on the spread-out input (im2col path), or
        # the N-d core with a unit depth
        fn = "conv_transpose2d"
        wt, w, out_s, out_zp = self._operands(fn, 4)
        N, C, H, W = shape
        g = int(self.groups)
        w_oihw, O, Cg = _transposed_weight(fn, w, g, C)
        ks = tuple(w_oihw.shape[2:])
        st, pd, dl, op = (tuple(int(v) for v in t) for t in (self.stride, self.padding, self.dilation,
                                                             self.output_padding))
        plan = conv_nd_plan(shape, (O, Cg) + ks, st, pd, dl, g, transposed=True, isa=isa)
        if not (kname != "scalar" and plan.path == "im2col" and _pairs_survive_reordering(plan, Cg, ks[0] * ks[1])):
            return self._prepare_nd(wt, w_oihw.transpose(0, 2, 3, 1)[:, None], O, (1,) + st, (0,) + pd, (1,) + dl,
                                    (0,) + op, g, True, 2, a_s, a_zp, out_s, out_zp, plan, reproduce_defects,
                                    kname, lambda x: x[:, None])
        if not plan.saturates and dl == (1, 1) and st != (1, 1) and all(k >= s_ for k, s_ in zip(ks, st)):
            return self._prepare_polyphase(wt, w_oihw, O, shape, ks, st, pd, op, g, a_s, a_zp, out_s, out_zp, kname)
        # qref.engines.fbgemm.conv_nd._convt2d_via_conv2d: a stride-1 conv over the input spread out by the stride (a_zp
        # elsewhere) with the kernel flipped
        out_hw = [(n - 1) * s_ - 2 * p + d * (k - 1) + o + 1 for n, s_, p, d, k, o in zip((H, W), st, pd, dl, ks, op)]
        size = [o + d * (k - 1) for o, d, k in zip(out_hw, dl, ks)]
        off = [d * (k - 1) - p for d, k, p in zip(dl, ks, pd)]
        sl = []  # per dim: (input slice, spread slice)
        for n_in, s_, o_, sz in zip((H, W), st, off, size):
            keep = [i for i in range(n_in) if 0 <= i * s_ + o_ < sz]
            if keep:
                i0, i1 = keep[0], keep[-1] + 1
                sl.append((slice(i0, i1), slice(i0 * s_ + o_, (i1 - 1) * s_ + o_ + 1, s_)))
            else:
                sl.append((slice(0, 0), slice(0, 0)))
        (ih, uh), (iw, uw) = sl
        prep = self._prepare_conv2d((N, size[0], size[1], C), w_oihw[:, :, ::-1, ::-1].transpose(0, 2, 3, 1), wt, O,
                                    (1, 1), (0, 0), dl, g, a_s, a_zp, out_s, out_zp, plan.saturates, kname)

        def run(v: np.ndarray, threads: int) -> np.ndarray:
            u = np.full((N, size[0], size[1], C), a_zp, np.uint8)
            u[:, uh, uw] = _channels_last(v)[:, ih, iw]
            return _core.conv2d_run(prep, u, threads)

        return _Entry(run, out_s, out_zp, prep)


    def _prepare_polyphase(self, wt, w_oihw, O, shape, ks, st, pd, op, g, a_s, a_zp, out_s, out_zp, kname):
        """The transposed im2col path without int16 saturation, as one stride-1 conv per output phase.

        fbgemm's transposed im2col (docs/numerics.md §4.4) multiplies every tap, the a_zp ones included, and
        then subtracts a_zp * col_offset and rowsum * w_zp, all in wrapping int32: raw is
        sum over taps of (a - a_zp) * (w - w_zp) modulo 2^32 (a ring identity; only int16 pair
        saturation would break it, hence not plan.saturates). A tap holding a_zp adds 0, so raw is
        the same sum over the taps that read the input. Output o (per dim, dilation 1) reads input
        i = (o + p - k) / s for the k with k == (o + p) mod s: for phase f = (o + p) mod s that is
        a stride-1 conv over the input with the taps k = f, f + s, ... flipped, a_zp padding
        (adds 0 as well). Same raw, same requantization, so the same bytes, with about 1/(sH*sW)
        of the multiplies (torch's fbgemm multiplies all of them)."""
        N, C, H, W = shape
        out_hw = [(n - 1) * s_ - 2 * p + (k - 1) + o + 1 for n, s_, p, k, o in zip((H, W), st, pd, ks, op)]
        dims = []  # per dim: [(first output o0, count T, taps J, first input lo)] per phase
        for n_out, s_, p, k in zip(out_hw, st, pd, ks):
            ph = []
            for f in range(s_):
                J = (k - f + s_ - 1) // s_
                q0 = -((f - p) // s_)  # ceil((p - f) / s)
                o0 = q0 * s_ + f - p
                T = max(0, (n_out - o0 + s_ - 1) // s_)
                ph.append((f, o0, T, J, q0 - (J - 1)))
            dims.append(ph)
        phases = []
        for fh, oh0, th, jh, lh in dims[0]:
            for fw, ow0, tw, jw, lw in dims[1]:
                if th == 0 or tw == 0:
                    continue
                win = (N, th + jh - 1, tw + jw - 1, C)
                # v[j] = w[f + (J - 1 - j) * s]: the phase's taps, flipped
                v = w_oihw[:, :, fh::st[0], fw::st[1]][:, :, ::-1, ::-1].transpose(0, 2, 3, 1)
                prep = self._prepare_conv2d(win, v, wt, O, (1, 1), (0, 0), (1, 1), g, a_s, a_zp, out_s, out_zp,
                                            False, kname)
                # the input rows / columns the window holds, clipped to the input
                sl = []
                for lo, n_win, n_in in ((lh, win[1], H), (lw, win[2], W)):
                    a, b = max(lo, 0), min(lo + n_win, n_in)
                    sl.append((slice(a - lo, max(b - lo, a - lo)), slice(a, max(b, a))))
                phases.append((prep, win, sl, oh0, ow0, th, tw))

        def run(v: np.ndarray, threads: int) -> np.ndarray:
            x = _channels_last(v)
            out = np.empty((N, out_hw[0], out_hw[1], O), np.uint8)
            for prep, win, ((wh, xh), (ww, xw)), oh0, ow0, th, tw in phases:
                u = np.full(win, a_zp, np.uint8)
                u[:, wh, ww] = x[:, xh, xw]
                out[:, oh0:oh0 + (th - 1) * st[0] + 1:st[0], ow0:ow0 + (tw - 1) * st[1] + 1:st[1]] = \
                    _core.conv2d_run(prep, u, threads)
            return out

        return _Entry(run, out_s, out_zp, phases)


_CLASSES = {"linear": LinearParams, "conv1d": Conv1dParams, "conv3d": Conv3dParams,
            "conv_transpose1d": ConvTransposeParams, "conv_transpose2d": ConvTransposeParams,
            "conv_transpose3d": ConvTransposeParams}


def handles(module: Any) -> bool:
    name = type(module).__name__
    mod = type(module).__module__
    if name not in MODULE_KINDS or not mod.startswith("torch.ao.nn"):
        return False
    return (".intrinsic." in mod) == (name in _RELU_NAMES)


def _direct_refusal(name: str) -> str:
    return (f"from_torch: this {name} runs fbgemm's direct transposed path (groups 1, channels % 8 == 0, kernel "
            f"height 2, stride 1/2, no padding), whose packed weights torch cannot unpack (module.weight() returns "
            f"uninitialized memory), so qref cannot read them; call qref.conv_transpose2d with the original "
            f"quantized weight instead")


def packed_engine_nd(module: Any) -> str:
    """'fbgemm', 'onednn' or 'unknown' for any supported module: see qref.bridge.modules.packed_engine."""
    return packed_engine(module)


def from_torch_nd(module: Any, *, check_engine: bool = True) -> _LayerParams:
    """Integer parameters of a quantized Linear / Conv1d / Conv3d / ConvTranspose1d/2d module."""


    name = type(module).__name__
    kind, relu = MODULE_KINDS[name]
    direct = False
    if kind == "conv_transpose2d":
        g = int(module.groups)
        plan = conv_nd_plan((1, module.in_channels, 8, 8), (module.out_channels, module.in_channels // g)
                            + tuple(module.kernel_size), module.stride, module.padding, module.dilation, g,
                            transposed=True)
        # E (tests/test_transposed.py): module.weight() of a module on fbgemm's direct path returns
        # uninitialized memory (different on every call; PackedDirectConvMatrix has no unpack). Two
        # calls that differ rule out a oneDNN-packed module (whose unpack is exact) without the
        # engine probe, whose call would fix fbgemm's cached column offsets to the probe's input
        # size (docs/numerics.md §4.5).
        direct = plan.path == "direct"
        if direct and not bool((module.weight().int_repr() == module.weight().int_repr()).all()):
            raise UnsupportedModuleError(_direct_refusal(name))
    # oneDNN-packed: qref.engines.onednn.nd (Conv1d as conv2d; Linear: qref.layers.linear)
    engine = module_engine(module, name) if check_engine else "fbgemm"
    if direct and engine == "fbgemm":
        raise UnsupportedModuleError(_direct_refusal(name))
    if engine == "qnnpack" and kind != "linear":
        raise UnsupportedModuleError(f"from_torch: this {name} was packed by QNNPACK (converted under engine "
                                     f"'qnnpack'); qref reproduces QNNPACK's Conv2d and Linear only")
    common = dict(
        **module_weights(module, name),
        output_scale=float(module.scale),
        output_zero_point=int(module.zero_point),
        relu=relu,
        module_type=name,
    )
    if kind == "linear":
        params = LinearParams(**common, engine=engine)
        if engine == "onednn":
            object.__setattr__(params, "_module", module)
        return params
    pm = getattr(module, "padding_mode", "zeros")
    if pm not in ("zeros", "reflect") or (pm != "zeros" and kind.startswith("conv_transpose")):
        raise UnsupportedModuleError(f"from_torch: {name} with padding_mode={pm!r} is not supported")
    conv = dict(
        stride=tuple(int(v) for v in module.stride),
        padding=tuple(int(v) for v in module.padding),
        dilation=tuple(int(v) for v in module.dilation),
        output_padding=tuple(int(v) for v in getattr(module, "output_padding", ())) if module.transposed else (),
        groups=int(module.groups),
        padding_mode=pm,
    )
    params = _CLASSES[kind](**common, **conv, engine=engine)
    if engine == "onednn":
        object.__setattr__(params, "_module", module)
    return params
