"""torch's default "x86" engine (and "onednn") for Conv1d, Conv3d and
ConvTranspose1d/2d/3d: oneDNN's arithmetic per kernel family (qref.engines.onednn.nd), against real
torch modules on this host.

Cases are tie-rich (power-of-two real multipliers, small weights, bias multiples of the output
scale) so that candidate formulas round apart; the discrimination tests show that the
alternatives (multiply vs divide by the dst scale, combined vs separate scales) would fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import oracle_onednn  # noqa: E402
from oracle import assert_same  # noqa: E402

torch = pytest.importorskip("torch")
import torch.ao.nn.intrinsic.quantized as nniq  # noqa: E402
import torch.ao.nn.quantized as nnq  # noqa: E402

import qref  # noqa: E402
from qref import onednn  # noqa: E402
from qref.demo import quantized_engine  # noqa: E402
from qref.engines.onednn import nd as onednn_nd  # noqa: E402
from qref.engines.onednn.kernel_names import is_amx_build  # noqa: E402

_A_SCALES = [0.003, 0.013, 0.03, 0.065, 0.079, 0.1]
_O_SCALES = [0.007, 0.065, 0.079, 0.101, 0.129, 0.149, 0.3]
KINDS = ("conv1d", "conv3d", "convt1d", "convt2d", "convt3d")


@pytest.fixture(autouse=True)
def _x86_engine():
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    yield
    torch.backends.quantized.engine = prev


def _vnni_host(kind: str = "") -> None:
    """Skip unless torch sends these layers to oneDNN with kernels qref reproduces: the vnni class, and
    the amx class (qref follows the kernel oneDNN's log names there) except for transposed convs
    (``kind`` "convt*": oneDNN runs AMX deconvolution builds there, which qref refuses by name) and the
    tests of a kernel choice only a VNNI CPU without AMX makes (``kind`` "vnni")."""
    cls = onednn.onednn_isa().effective
    if cls == "amx" and not (kind.startswith("convt") or kind == "vnni"):
        return
    if cls != "vnni":
        pytest.skip(f"this host's oneDNN class is {cls!r}: torch's x86 engine sends Conv1d/Conv3d/transposed convs "
                    f"to oneDNN only on AVX512-VNNI hosts, and these layers are verified on the 'vnni' class "
                    f"(AMX: all but transposed convs and the gemm-conv choice of VNNI CPUs)")


def _case(kind: str, seed: int):
    """A random module of `kind` under the x86 engine and a quint8 input (torch tensors)."""
    r = np.random.default_rng(seed)
    nd = {"conv1d": 1, "conv3d": 3, "convt1d": 1, "convt2d": 2, "convt3d": 3}[kind]
    transposed = kind.startswith("convt")
    tie = seed % 3 != 0
    a_s, o_s = float(r.choice(_A_SCALES)), float(r.choice(_O_SCALES))
    g = int(r.choice([1, 1, 2, 4]))
    Cg, Og = int(r.choice([1, 2, 3, 4, 8])), int(r.choice([1, 2, 3, 4, 8]))
    if r.random() < 0.25:  # depthwise
        Cg, Og, g = 1, 1, int(r.choice([4, 8, 16]))
    C, O = Cg * g, Og * g
    if transposed and r.random() < 0.75:
        O = C  # torch's IC != OC defect (docs/numerics.md §6.5) is tested apart
    span = {1: 16, 2: 8, 3: 6}[nd]
    ks = tuple(int(v) for v in r.integers(1, 4, nd))
    st = tuple(int(v) for v in r.integers(1, 3, nd))
    dl = tuple(int(v) for v in r.integers(1, 3, nd))
    pd = tuple(int(r.integers(0, k)) for k in ks)
    S = tuple(int(r.integers(d * (k - 1) + 1, max(d * (k - 1) + 1, span) + 1)) for k, d in zip(ks, dl))
    wmax = 3 if tie else 127
    K = Cg * int(np.prod(ks))
    m_pow = 2.0 ** -float(max(1, round(np.log2(np.sqrt(K) * 74 * wmax / 60))) + int(r.integers(-1, 2)))
    w_s = float(np.float32(o_s * m_pow / a_s)) if tie else float(r.uniform(0.001, 0.02))
    per_channel = not transposed and bool(r.integers(0, 2))
    wshape = ((C, O // g) if transposed else (O, C // g)) + ks
    wi = torch.from_numpy(r.integers(-wmax, wmax + 1, wshape).astype(np.int8))
    if per_channel:
        scales = torch.from_numpy(w_s * r.choice([1.0, 0.5, 2.0], O))
        qw = torch._make_per_channel_quantized_tensor(wi, scales, torch.zeros(O, dtype=torch.long), 0)
    else:
        qw = torch._make_per_tensor_quantized_tensor(wi, w_s, 0)
    bias = None
    if r.random() < 0.85:
        b = np.float32(o_s) * r.integers(-40, 40, O).astype(np.float32) if tie else r.normal(0, 1, O)
        bias = torch.from_numpy(b.astype(np.float32))
    a_zp, o_zp = int(r.integers(0, 256)) if seed % 5 else 0, int(r.integers(0, 256))
    x = torch.from_numpy(r.integers(0, 256, (int(r.integers(1, 3)), C) + S).astype(np.uint8))
    qx = torch._make_per_tensor_quantized_tensor(x, a_s, a_zp)
    relu = not transposed and bool(r.integers(0, 2))
    geo = dict(stride=st, padding=pd, dilation=dl, groups=g)
    if kind == "conv1d":
        m = (nniq.ConvReLU1d if relu else nnq.Conv1d)(C, O, ks, **geo)
    elif kind == "conv3d":
        m = (nniq.ConvReLU3d if relu else nnq.Conv3d)(C, O, ks, **geo)
    else:
        m = {1: nnq.ConvTranspose1d, 2: nnq.ConvTranspose2d, 3: nnq.ConvTranspose3d}[nd](C, O, ks, **geo)
    m.set_weight_bias(qw, bias)
    m.scale, m.zero_point = o_s, o_zp
    return m, qx


def _check_module(m, qx, what: str) -> str:
    """from_torch(m)(qx) == m(qx) byte for byte, or torch's known defect named; returns the kernel."""
    from dataclasses import replace

    from qref.bridge.onednn_verbose import module_kernel
    from qref.bridge_nd import packed_engine_nd

    t = m(qx).int_repr().numpy()
    assert packed_engine_nd(m) == "onednn", what
    p = qref.from_torch(m)
    assert p.engine == "onednn", what
    # as qref.check does: the kernel oneDNN reports for this input settles heuristic choices
    k = module_kernel(m, qx)
    q = (replace(p, onednn_kernel=k) if k else p)(qx).int_repr().numpy()
    # from_torch's params read the kernel themselves when called on a quint8 tensor
    assert_same(p(qx).int_repr().numpy(), q, what + " (params reading the kernel)")
    if getattr(m, "transposed", False) and m.in_channels != m.out_channels:
        # docs/numerics.md §6.5: torch's own output is wrong here (check() reports TORCH_WRONG), except in
        # degenerate shapes (e.g. a 1-tap kernel into one output channel) where it happens to agree
        assert p.known_torch_defect(tuple(qx.shape)), what
        return "torch defect"
    if k and is_amx_build(k) and not np.array_equal(q, t) and _amx_defect(m, qx, q, t):
        return "torch defect"
    assert_same(q, t, what)
    return "ok"


def _amx_defect(m, qx, q: np.ndarray, t: np.ndarray) -> bool:
    """oneDNN's AMX brg_conv_fwd build gives wrong values for some dilated strided convs (measured with
    torch 2.13 on an AMX Xeon: Conv3d off by up to 224 steps), as for Conv2d (tests/test_onednn.py,
    _amx_measured_defect): qref within one step of the float computation everywhere, torch 3 or more
    steps off where they differ."""
    x = qx.dequantize().double()
    w = m.weight().dequantize().double()
    b = m.bias()
    conv = {3: torch.nn.functional.conv1d, 5: torch.nn.functional.conv3d}[x.dim()]
    y = conv(x, w, None if b is None else b.double(), m.stride, m.padding, m.dilation, m.groups)
    if "ReLU" in type(m).__name__:
        y = y.clamp(min=0)
    ref = torch.clamp(torch.round(y / m.scale) + m.zero_point, 0, 255).numpy()
    bad = q != t
    return bool(np.abs(q - ref).max() <= 1 and np.abs(t[bad].astype(np.float64) - ref[bad]).max() >= 3)


@pytest.mark.parametrize("kind", KINDS)
def test_modules_vs_torch(kind):
    """A few random tie-rich modules of each kind, converted under the x86 engine."""
    _vnni_host(kind)
    for seed in range(12):
        m, qx = _case(kind, seed)
        _check_module(m, qx, f"{kind} seed={seed} {m}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_modules_vs_torch_long(kind, request):
    _vnni_host(kind)
    n = max(200, int(request.config.getoption("--sweep") or 0) // 5)
    seen = set()
    for seed in range(100, 100 + n):
        m, qx = _case(kind, seed)
        seen.add(_check_module(m, qx, f"{kind} seed={seed} {m}"))
    assert "ok" in seen


# ----------------------------------------------------------------------------- discrimination


def _zero_acc_probe(m, C: int, spatial: tuple, bias: np.ndarray, o_s: float, o_zp: int) -> tuple:
    """Input == its zero point everywhere: A == 0 in every kernel family, so y == bias and the
    output shows only how the kernel applies the dst scale. Returns (torch, times 1/dst, over dst)
    at one interior output position."""
    a_zp = 77
    qx = torch._make_per_tensor_quantized_tensor(torch.full((1, C) + spatial, a_zp, dtype=torch.uint8), 0.05, a_zp)
    t = m(qx).int_repr().numpy()[(0, slice(None)) + tuple(n // 2 for n in m(qx).shape[2:])]
    A = np.zeros_like(bias)
    mul = oracle_onednn.requantize(A, 0.05, np.ones_like(bias, dtype=np.float64), bias, o_s, o_zp, False, False, False)
    div = oracle_onednn.requantize(A, 0.05, np.ones_like(bias, dtype=np.float64), bias, o_s, o_zp, False, False, True)
    return t, mul, div


def _tie_biases(o_s: float, n: int) -> np.ndarray:
    """Biases (k + 1/2) * dst_scale where y * (1/dst) and y / dst round to different integers."""
    from qref import _core

    inv = np.float32(_core.onednn_scales(0.05, o_s)[1])
    dst = np.float32(1) / np.float32(1.0 / o_s)
    k = np.arange(-120, 120)
    b = ((k + np.float32(0.5)).astype(np.float32) * dst).astype(np.float32)
    sel = b[np.rint(b * inv) != np.rint(b / dst)]
    assert len(sel) >= 4, o_s
    return np.resize(sel, n).astype(np.float32)


@pytest.mark.parametrize("layer,divides", [
    ("conv3d brg_conv_fwd", False), ("conv3d brdgmm_dw", False), ("conv3d depthwise dilated (gemm conv)", False),
    ("deconv brg (stride 1)", False), ("deconv jit (stride 2)", False), ("deconv ref (stride 2, dilation 2)", True),
    ("deconv1d ref (stride 2, dilation 2)", True), ("deconv3d depthwise (ref)", True)])
def test_dst_scale_multiply_or_divide(layer, divides):
    """Which kernels multiply by 1/dst and which divide by dst (ref_deconvolution), shown with
    biases where the two differ; qref's plan agrees, and the other choice would fail."""
    _vnni_host()
    o_s, C = 0.24345084788616025, 16
    bias = _tie_biases(o_s, C)
    r = np.random.default_rng(0)

    def w(shape):
        return torch._make_per_tensor_quantized_tensor(torch.from_numpy(r.integers(-5, 6, shape).astype(np.int8)),
                                                       0.01, 0)
    mods = {
        "conv3d brg_conv_fwd": (nnq.Conv3d(C, C, 3, padding=1), (C, C, 3, 3, 3), (6, 6, 6)),
        "conv3d brdgmm_dw": (nnq.Conv3d(C, C, 3, padding=1, groups=C), (C, 1, 3, 3, 3), (6, 6, 6)),
        "conv3d depthwise dilated (gemm conv)": (nnq.Conv3d(C, C, 3, padding=2, dilation=2, groups=C),
                                                 (C, 1, 3, 3, 3), (6, 6, 6)),
        "deconv brg (stride 1)": (nnq.ConvTranspose2d(C, C, 3), (C, C, 3, 3), (6, 6)),
        "deconv jit (stride 2)": (nnq.ConvTranspose2d(C, C, 3, stride=2), (C, C, 3, 3), (6, 6)),
        "deconv ref (stride 2, dilation 2)": (nnq.ConvTranspose2d(C, C, 3, stride=2, dilation=2), (C, C, 3, 3),
                                              (6, 6)),
        "deconv1d ref (stride 2, dilation 2)": (nnq.ConvTranspose1d(C, C, 3, stride=2, dilation=2), (C, C, 3),
                                                (9,)),
        "deconv3d depthwise (ref)": (nnq.ConvTranspose3d(C, C, 3, groups=C), (C, 1, 3, 3, 3), (5, 5, 5)),
    }
    m, wshape, spatial = mods[layer]
    m.set_weight_bias(w(wshape), torch.from_numpy(bias))
    m.scale, m.zero_point = o_s, 100
    t, mul, div = _zero_acc_probe(m, C, spatial, bias, o_s, 100)
    assert (mul != div).any()  # the probe discriminates
    assert_same(t, div if divides else mul, layer)
    transposed = layer.startswith("deconv")
    nd = len(spatial) if len(spatial) > 1 else 2
    st = tuple(m.stride) if len(m.stride) > 1 else (1,) + tuple(m.stride)
    dl = tuple(m.dilation) if len(m.dilation) > 1 else (1,) + tuple(m.dilation)
    ks = tuple(m.kernel_size) if len(m.kernel_size) > 1 else (1,) + tuple(m.kernel_size)
    plan, _ = onednn_nd.plan_nd(transposed, nd, m.groups, m.in_channels // m.groups, m.out_channels // m.groups,
                                ks, st, dl)
    assert plan.divide_dst == divides, (layer, plan)


def _conv_form(m, x: np.ndarray, transposed: bool) -> tuple:
    """Module m's int8 weight in conv form and its geometry, a 1D layer as 2D:
    (x, weight, groups, stride, padding, dilation, output spatial sizes)."""
    from qref.layers.conv_nd import _transposed_weight

    wi = m.weight().int_repr().numpy()
    g = m.groups
    if transposed:
        wi, _, _ = _transposed_weight("t", wi, g, x.shape[1])
    if x.ndim == 3:  # 1D as 2D
        x, wi = x[:, :, None], wi[:, :, None]
    st, pd, dl = (tuple(v) for v in (m.stride, m.padding, m.dilation))
    if len(st) < x.ndim - 2:
        st, pd, dl = (1,) + st, (0,) + pd, (1,) + dl
    ks = wi.shape[2:]
    if transposed:
        osp = tuple((n - 1) * s - 2 * p + d * (k - 1) + 1 for n, s, p, d, k in zip(x.shape[2:], st, pd, dl, ks))
    else:
        osp = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, s, p, d, k in zip(x.shape[2:], st, pd, dl, ks))
    return x, wi, g, st, pd, dl, osp


def _alt_output(m, qx, combined: bool) -> np.ndarray:
    """qref's output of module m with the scale order forced (for the discrimination test)."""
    w = m.weight()
    transposed = bool(getattr(m, "transposed", False))
    x, wi, g, st, pd, dl, osp = _conv_form(m, qx.int_repr().numpy(), transposed)
    ks = wi.shape[2:]
    plan, chain = onednn_nd.plan_nd(transposed, x.ndim - 2, g, wi.shape[1], wi.shape[0] // g, ks, st, dl)
    x_cl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    acc, col = oracle_onednn.integer_sums(x_cl, wi, g, st, pd, dl, osp, transposed)
    A = oracle_onednn.compensated(acc, col, wi.reshape(wi.shape[0], -1).astype(np.int64).sum(1), qx.q_zero_point(), chain)
    ws = (w.q_per_channel_scales().numpy() if w.qscheme() == torch.per_channel_affine
          else np.full(wi.shape[0], w.q_scale()))
    b = m.bias()
    y = oracle_onednn.requantize(A, qx.q_scale(), ws, None if b is None else b.detach().numpy(), m.scale,
                             m.zero_point, False, combined, plan.divide_dst)
    return np.moveaxis(y, -1, 1).reshape(m(qx).shape)


@pytest.mark.parametrize("family", ["ref_deconvolution", "gemm_conv"])
def test_scale_order_discriminates(family):
    """ref_deconvolution multiplies by ss then by ws (separate), oneDNN's gemm conv by f32(ss*ws)
    (combined): over tie-rich cases the chosen order matches torch everywhere, the other does not."""
    _vnni_host()
    r = np.random.default_rng(7)
    wrong = 0
    for i in range(30):
        a_s, o_s = float(r.choice(_A_SCALES)), float(r.choice(_O_SCALES))
        if family == "ref_deconvolution":
            C, g, k = int(r.choice([8, 16])), 1, 3
            m = nnq.ConvTranspose1d(C, C, k, stride=2, dilation=2, padding=int(r.integers(0, 3)))
            wshape, xshape = (C, C, k), (2, C, 20)
        else:
            C = g = 16
            k = 3
            m = nnq.Conv3d(C, C, k, dilation=2, padding=2, groups=g)
            wshape, xshape = (C, 1, 3, 3, 3), (1, C, 6, 7, 7)
        K = int(np.prod(wshape[1:]))
        w_s = float(np.float32(o_s * 2.0 ** -max(1, round(np.log2(np.sqrt(K) * 74 * 3 / 60))) / a_s))
        qw = torch._make_per_tensor_quantized_tensor(
            torch.from_numpy(r.integers(-3, 4, wshape).astype(np.int8)), w_s, 0)
        m.set_weight_bias(qw, torch.from_numpy(np.float32(o_s) * r.integers(-40, 40, C).astype(np.float32)))
        m.scale, m.zero_point = o_s, int(r.integers(0, 256))
        qx = torch._make_per_tensor_quantized_tensor(
            torch.from_numpy(r.integers(0, 256, xshape).astype(np.uint8)), a_s, int(r.integers(0, 256)))
        _check_module(m, qx, f"{family} case {i}")
        chosen = onednn_nd.plan_nd(family == "ref_deconvolution", 2 if family == "ref_deconvolution" else 3, g,
                                   C // g, C // g, (1, k) if family == "ref_deconvolution" else (3, 3, 3),
                                   (1, 2) if family == "ref_deconvolution" else (1, 1, 1),
                                   (1, 2) if family == "ref_deconvolution" else (2, 2, 2))[0].combined_scale
        assert_same(_alt_output(m, qx, chosen), m(qx).int_repr().numpy(), f"{family} case {i} (chosen)")
        wrong += int((_alt_output(m, qx, not chosen) != m(qx).int_repr().numpy()).sum())
    assert wrong > 0, f"{family}: the cases do not discriminate the scale order"


def test_ref_deconvolution_large_accumulators():
    """ref_deconvolution's float round trip (f32(acc) - f32(zp * colsum)) with sums past 2^24:
    qref's chain agrees with torch where float32 no longer holds every sum (on this case the
    exact-integer chain agrees too: the rounding stays below the output's resolution)."""
    _vnni_host()
    C, k = 512, 5
    m = nnq.ConvTranspose1d(C, C, k, stride=2, dilation=2)
    r = np.random.default_rng(3)
    wi = np.where(r.random((C, C, k)) < 0.9, 127, -128).astype(np.int8)
    m.set_weight_bias(torch._make_per_tensor_quantized_tensor(torch.from_numpy(wi), 1e-4, 0),
                      torch.from_numpy(r.normal(0, 1, C).astype(np.float32)))
    m.scale, m.zero_point = 3.7, 128
    x = np.where(r.random((1, C, 12)) < 0.95, 255, 0).astype(np.uint8)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.0173, 3)
    acc, _ = oracle_onednn.integer_sums(np.ascontiguousarray(x[:, :, None].transpose(0, 2, 3, 1)), wi.transpose(1, 0, 2)[:, :, None],
                                    1, (1, 2), (0, 0), (1, 2), (1, 11 * 2 + 2 * 4 + 1), True)
    assert int(np.abs(acc).max()) > (1 << 24)  # float32 can no longer hold every sum exactly
    _check_module(m, qx, "ref deconvolution, |acc| > 2^24")


# ----------------------------------------------------------------------------- kernel rules (ONEDNN_VERBOSE)

_VERBOSE_SHAPES = [
    # (transposed, C, O, groups, kernel, stride, dilation, input spatial)
    (False, 16, 16, 1, (3, 3, 3), (1, 1, 1), (1, 1, 1), (6, 6, 6)),
    (False, 16, 16, 4, (3, 3, 3), (2, 2, 2), (2, 2, 2), (7, 7, 7)),
    (False, 16, 16, 16, (3, 3, 3), (1, 1, 1), (1, 1, 1), (6, 6, 6)),
    (False, 16, 16, 16, (3, 3, 3), (1, 2, 2), (2, 1, 1), (7, 7, 7)),
    (False, 16, 32, 16, (3, 3, 3), (1, 1, 1), (2, 2, 2), (7, 7, 7)),
    (True, 16, 16, 1, (3, 3), (1, 1), (2, 2), (6, 6)),
    (True, 16, 16, 4, (3, 3), (2, 1), (1, 2), (6, 6)),
    (True, 16, 16, 16, (3, 3), (2, 2), (1, 1), (6, 6)),
    (True, 16, 16, 1, (3, 3), (2, 2), (1, 2), (6, 6)),
    (True, 16, 16, 1, (3,), (2,), (2,), (9,)),
    (True, 16, 16, 1, (2, 2, 2), (1, 1, 2), (1, 1, 2), (4, 4, 4)),
    (True, 16, 16, 16, (2, 2, 2), (1, 1, 1), (1, 1, 1), (4, 4, 4)),
    (True, 16, 16, 4, (2, 2, 2), (2, 2, 2), (1, 1, 1), (4, 4, 4)),
    (True, 12, 12, 4, (3, 3, 3), (2, 1, 1), (1, 1, 1), (5, 5, 5)),   # Cg 3: no jit, k % s: no brg -> ref
    (True, 12, 12, 4, (2, 2, 2), (2, 1, 1), (1, 1, 1), (5, 5, 5)),   # k % s == 0: brgconv_strided
    (True, 12, 12, 4, (3, 3, 3), (1, 1, 1), (2, 2, 2), (7, 7, 7)),   # stride 1: brg (dilation ok)
    (True, 16, 16, 1, (1, 3), (1, 3), (2, 1), (5, 5)),               # strided + dilated elsewhere: jit
    (True, 24, 6, 3, (1, 4), (1, 2), (2, 1), (5, 5)),                # Cg 8, Og 2: no jit; dilation: no brg
    (True, 16, 16, 16, (4, 4, 4), (2, 1, 2), (1, 1, 1), (4, 4, 4)),  # 3D depthwise, strided brg
    (True, 16, 16, 16, (3, 3), (1, 1), (1, 1), (6, 6)),              # 2D depthwise: jit
]

_VERBOSE_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import torch
import torch.ao.nn.quantized as nnq
torch.backends.quantized.engine = "x86"
for tr, C, O, g, k, st, dl, sp in json.loads(sys.argv[1]):
    nd = len(k)
    M = ({1: nnq.ConvTranspose1d, 2: nnq.ConvTranspose2d, 3: nnq.ConvTranspose3d} if tr else
         {2: nnq.Conv2d, 3: nnq.Conv3d})[nd]
    m = M(C, O, k, stride=st, dilation=dl, groups=g)
    print("### case", flush=True)
    m(torch.quantize_per_tensor(torch.rand((1, C) + tuple(sp)), 0.1, 3, torch.quint8))
"""


def test_kernel_rules_match_onednn_verbose():
    """plan_nd's kernel family for each shape is the kernel oneDNN reports (ONEDNN_VERBOSE=1,
    read in a fresh interpreter: oneDNN reads it once)."""
    _vnni_host()
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    out = subprocess.run([sys.executable, "-c", _VERBOSE_SCRIPT, json.dumps(_VERBOSE_SHAPES)], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    kernels = []
    for case, block in zip(_VERBOSE_SHAPES, out.split("### case")[1:]):
        # onednn_verbose,v1,primitive,exec,cpu,<primitive kind>,<implementation>,...
        kind = "deconvolution" if case[0] else "convolution"
        ex = [ln.split(",") for ln in block.splitlines() if ",exec,cpu," in ln]
        ex = [f[6] for f in ex if len(f) > 6 and f[5] == kind]
        assert ex, block[:500]
        kernels.append(ex[-1])
    assert len(kernels) == len(_VERBOSE_SHAPES)
    for (tr, C, O, g, k, st, dl, _sp), kern in zip(_VERBOSE_SHAPES, kernels):
        nd = max(len(k), 2)
        st2 = tuple(st) if len(st) > 1 else (1,) + tuple(st)
        dl2 = tuple(dl) if len(dl) > 1 else (1,) + tuple(dl)
        k2 = tuple(k) if len(k) > 1 else (1,) + tuple(k)
        plan, chain = onednn_nd.plan_nd(tr, nd, g, C // g, O // g, k2, st2, dl2)
        if chain == "ref_deconv":
            assert kern.startswith("conv:any"), (tr, C, O, g, k, st, dl, kern)
        elif "gemm" in plan.kernel:
            assert "gemm_s8u8s32" in kern and not kern.startswith("conv:any"), (tr, C, O, g, k, st, dl, kern)
        else:
            assert kern.split(":")[0] in ("brg_conv_fwd", "brgconv_1x1", "jit_int8", "jit_int8_1x1", "brdgmm_dw",
                                          "brg_deconv", "jit_deconvolution"), (tr, C, O, g, k, st, dl, kern)


# ----------------------------------------------------------------------------- check() on a default-engine model


def test_check_default_engine_model():
    """qref.check on a model converted under the default x86 engine verifies every conv layer
    (oneDNN-packed ones included) and reports torch's transposed IC != OC defect as TORCH_WRONG."""
    _vnni_host("vnni")
    import torch.nn as nn
    from torch.ao.quantization import (
        DeQuantStub,
        QuantStub,
        convert,
        default_qconfig,
        fuse_modules,
        get_default_qconfig,
        prepare,
    )

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = QuantStub()
            self.c1 = nn.Conv1d(8, 16, 3, padding=1)
            self.r1 = nn.ReLU()
            self.t1 = nn.ConvTranspose1d(16, 16, 4, stride=2, padding=1)
            self.c3 = nn.Conv3d(4, 8, 3, padding=1)
            self.t3 = nn.ConvTranspose3d(8, 4, 2, stride=2)
            self.t2 = nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1)
            self.dq = DeQuantStub()

        def forward(self, x, y, z):
            return (self.dq(self.t1(self.r1(self.c1(self.q(x))))), self.dq(self.t3(self.c3(self.q(y)))),
                    self.dq(self.t2(self.q(z))))

    torch.manual_seed(0)
    net = fuse_modules(Net().eval(), [["c1", "r1"]])
    net.qconfig = get_default_qconfig("x86")
    for t in (net.t1, net.t2, net.t3):
        t.qconfig = default_qconfig  # torch has no per-channel observer for transposed convs
    prepared = prepare(net)
    ins = (torch.randn(2, 8, 20), torch.randn(1, 4, 6, 6, 6), torch.randn(1, 8, 7, 7))
    prepared(*ins)
    model = convert(prepared)
    rep = qref.check(model, *ins)
    status = {r.name: r.status for r in rep.layers}
    assert status["c1"] == status["t1"] == status["c3"] == status["t2"] == "ok", str(rep)
    assert status["t3"] == "TORCH_WRONG", str(rep)  # ConvTranspose3d(8 -> 4): docs/numerics.md §6.5
    assert all(r.path == "oneDNN" for r in rep.layers if r.name in ("c1", "t1", "c3", "t2", "t3"))


def test_engine_probe_sees_onednn_when_first_probe_is_all_zero():
    """packed_engine's first probe can give all zeros under oneDNN too (here a transposed conv into
    one output channel whose values are all <= 0 on the probe input); the complemented input
    flips every sign, so the module is still recognised as oneDNN-packed."""
    _vnni_host()
    import torch.ao.nn.quantized as nnq_

    from qref.torch_bridge import packed_engine

    m, _ = _case("convt1d", 238)
    assert isinstance(m, nnq_.ConvTranspose1d) and m.out_channels == 1
    assert packed_engine(m) == "onednn"


def test_kernel_read_from_onednn_verbose_at_run_time():
    """qref.check's kernel detection: torch's oneDNN log, captured in-process, names the kernel
    per input shape (oneDNN's brgemm conv declines this small grouped conv at width 13, not 40)."""
    _vnni_host("vnni")
    from qref.bridge.onednn_verbose import module_kernel
    from qref.engines.onednn.kernel_names import kernel_family

    def q(shape, zp=128):
        return torch._make_per_tensor_quantized_tensor(torch.full(shape, 128, dtype=torch.uint8), 0.1, zp)

    m = nnq.Conv1d(2, 4, 3, stride=2, groups=2)
    assert kernel_family(module_kernel(m, q((2, 2, 13)))) == "gemm"
    assert kernel_family(module_kernel(m, q((2, 2, 40)))) == "fast"
    t = nnq.ConvTranspose2d(8, 8, 3, stride=2, dilation=2)
    assert kernel_family(module_kernel(t, q((1, 8, 7, 7)))) == "ref_deconv"


def test_onednn_kernel_override():
    """onednn_kernel= (what check() passes) selects the family's arithmetic; a kernel qref has not
    reproduced is refused by name; the shape rules agree with the kernel oneDNN names."""
    _vnni_host()
    from qref.bridge.onednn_verbose import module_kernel

    r = np.random.default_rng(11)
    for m in (nnq.Conv3d(8, 16, 3, padding=1), nnq.Conv3d(16, 16, 3, padding=2, dilation=2, groups=16)):
        qw = torch._make_per_tensor_quantized_tensor(
            torch.from_numpy(r.integers(-3, 4, tuple(m.weight().shape)).astype(np.int8)), 0.004, 0)
        m.set_weight_bias(qw, torch.from_numpy(r.normal(0, 1, m.out_channels).astype(np.float32)))
        m.scale, m.zero_point = 0.079, 100
        qx = torch._make_per_tensor_quantized_tensor(
            torch.from_numpy(r.integers(0, 256, (1, m.in_channels, 6, 7, 7)).astype(np.uint8)), 0.065, 3)
        kw = dict(padding=m.padding, dilation=m.dilation, groups=m.groups, output_scale=m.scale,
                  output_zero_point=m.zero_point, engine="x86")
        name = module_kernel(m, qx)
        named = qref.conv3d(qx, m.weight(), m.bias(), onednn_kernel=name, **kw).int_repr().numpy()
        assert_same(named, qref.conv3d(qx, m.weight(), m.bias(), **kw).int_repr().numpy(), f"{name} vs rules")
        assert_same(named, m(qx).int_repr().numpy(), f"{name} vs torch")
    with pytest.raises(qref.OneDNNNotSupportedError, match="'some_new_kernel:avx10' is not a oneDNN convolution"):
        qref.conv3d(qx, m.weight(), m.bias(), onednn_kernel="some_new_kernel:avx10", **kw)
    with pytest.raises(TypeError, match="onednn_kernel=3 has type int"):
        qref.conv3d(qx, m.weight(), m.bias(), onednn_kernel=3, **kw)
    # names that must not be computed with VNNI arithmetic: another ISA's build, another primitive,
    # or a named kernel for a class qref follows by its rules only
    bad = [("brg_conv_fwd:avx512_core", "built for avx512_core"), ("jit_uni_int8:avx2", "is not a oneDNN convolution"),
           ("brg_matmul:avx512_core_vnni", "is not a oneDNN convolution"),
           ("brg_deconv:avx512_core_vnni", "is not a oneDNN convolution")]
    for name, msg in bad:
        with pytest.raises(qref.OneDNNNotSupportedError, match=msg):
            qref.conv3d(qx, m.weight(), m.bias(), onednn_kernel=name, **kw)
    x2 = torch._make_per_tensor_quantized_tensor(torch.full((1, 4, 6, 6), 100, dtype=torch.uint8), 0.1, 3)
    w2 = torch._make_per_tensor_quantized_tensor(torch.ones((4, 4, 3, 3), dtype=torch.int8), 0.01, 0)
    kw2 = dict(output_scale=0.1, output_zero_point=5, engine="onednn")
    with pytest.raises(qref.OneDNNNotSupportedError, match="class 'avx2': qref follows named kernels of the 'vnni'"):
        qref.conv2d(x2, w2, onednn_kernel="brg_conv_fwd:avx512_core_vnni", isa="avx2", **kw2)
    with pytest.raises(qref.OneDNNNotSupportedError, match="built for avx2"):
        qref.conv2d(x2, w2, onednn_kernel="jit_int8:avx2", **kw2)
    with pytest.raises(qref.OneDNNNotSupportedError, match="is not a oneDNN deconvolution"):
        qref.conv_transpose2d(x2, w2, onednn_kernel="brg_conv_fwd:avx512_core_vnni", **kw2)
    xl = torch._make_per_tensor_quantized_tensor(torch.full((3, 8), 100, dtype=torch.uint8), 0.1, 3)
    wl = torch._make_per_tensor_quantized_tensor(torch.ones((4, 8), dtype=torch.int8), 0.01, 0)
    with pytest.raises(qref.OneDNNNotSupportedError, match="is not a oneDNN matmul"):
        qref.linear(xl, wl, onednn_kernel="brg_conv_fwd:avx512_core_vnni", **kw2)


def test_check_small_grouped_conv1d_on_gemm_conv():
    """oneDNN's brgemm conv declines this small grouped Conv1d (one input channel per group) and its
    gemm conv runs it with one combined scale; qref.check reads the kernel from oneDNN's log and
    verifies the layer (the shape rules alone pick brgemm's separate scales, which round apart on
    this input)."""
    _vnni_host()
    import torch.nn as nn
    from torch.ao.quantization import DeQuantStub, QuantStub

    m, qx = _case("conv1d", 220)
    p = qref.from_torch(m)
    from dataclasses import replace

    rules = replace(p)(qx).int_repr().numpy()  # a copy without the module: qref's shape rules (brgemm's scales)
    assert (rules != m(qx).int_repr().numpy()).any()
    assert_same(p(qx).int_repr().numpy(), m(qx).int_repr().numpy(), "params on the tensor read the kernel")
    assert_same(p(qx.int_repr().numpy(), input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point()),
                m(qx).int_repr().numpy(), "params on the numpy array read the kernel too")

    class Net(nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.q, self.conv, self.dq = QuantStub(), conv, DeQuantStub()

        def forward(self, x):
            return self.conv(x)

    rep = qref.check(Net(m).eval(), qx)
    row = [r for r in rep.layers if r.name == "conv"][0]
    assert row.status == "ok" and row.path == "oneDNN", str(rep)


def test_explain_reads_the_onednn_kernel():
    """qref.explain on a module reads the kernel like check(): on the gemm-conv Conv1d the element
    where brgemm's scale order would round apart is explained with the combined scale, = torch."""
    _vnni_host("vnni")
    m, qx = _case("conv1d", 220)
    t = m(qx).int_repr().numpy()
    from dataclasses import replace

    p = replace(qref.from_torch(m))  # without the module: qref's shape rules alone
    bad = np.argwhere(p(qx).int_repr().numpy() != t)
    assert len(bad)  # where the rules alone round apart
    e = qref.explain(m, qx, tuple(int(v) for v in bad[0]))
    assert "gemm_s8u8s32" in str(e) and "combined scale" in str(e)
    assert e.value == e.torch_value == int(t[tuple(bad[0])])


def _oracle_run(x_cl, a_s, a_zp, w, ws, bias, stride, padding, dilation, groups, out_spatial, out_s, out_zp, relu,
                transposed, combined, divide_dst, chain):
    """The numpy oracle (tests/oracle_onednn.py) of onednn_nd.run with a given chain."""
    acc, col = oracle_onednn.integer_sums(x_cl, w, groups, stride, padding, dilation, out_spatial, transposed)
    A = oracle_onednn.compensated(acc, col, w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1), a_zp, chain)
    return oracle_onednn.requantize(A, a_s, ws, bias, out_s, out_zp, relu, combined, divide_dst)


def _core_operands(kind: str, seed: int):
    """onednn_nd.run's operands for a random module of `kind` (weight in conv form)."""
    m, qx = _case(kind, seed)
    w = m.weight()
    transposed = kind.startswith("convt")
    x, wi, g, st, pd, dl, osp = _conv_form(m, qx.int_repr().numpy(), transposed)
    ws = (w.q_per_channel_scales().numpy() if w.qscheme() == torch.per_channel_affine
          else np.full(wi.shape[0], w.q_scale()))
    b = m.bias()
    relu = type(m).__name__.startswith("ConvReLU")
    return dict(x_cl=np.ascontiguousarray(np.moveaxis(x, 1, -1)), a_s=qx.q_scale(), a_zp=qx.q_zero_point(), w=wi,
                ws=ws.astype(np.float64), bias=None if b is None else b.detach().numpy().astype(np.float32),
                stride=st, padding=pd, dilation=dl, groups=g, out_spatial=osp, out_s=m.scale, out_zp=m.zero_point,
                relu=relu, transposed=transposed)


@pytest.mark.parametrize("chain", ["int", "float", "ref_deconv"])
@pytest.mark.parametrize("kind", ["conv3d", "convt1d", "convt2d", "convt3d"])
def test_core_reference_equals_numpy_oracle(kind, chain):
    """oneDNN's N-d reference loop of the C++ core (every compensation chain, both scale orders,
    both dst-scale forms) gives the numpy oracle's bytes (tests/oracle_onednn.py: integer_sums +
    compensated + requantize, the route qref used to compute in Python)."""
    from qref.onednn import OnednnPlan

    for seed in range(12):
        op = _core_operands(kind, seed)
        combined, divide_dst = bool(seed % 2), bool(seed % 3 == 0)
        plan = OnednnPlan("vnni", "test", False, combined, chain == "float", True, divide_dst=divide_dst)
        got = onednn_nd._run_reference(**op, plan=plan, chain=chain)
        ref = _oracle_run(**op, combined=combined, divide_dst=divide_dst, chain=chain)
        assert_same(got, ref, f"{kind} seed={seed} chain={chain} combined={combined} divide_dst={divide_dst}")


@pytest.mark.parametrize("kind", ["conv3d", "convt1d", "convt2d", "convt3d"])
def test_core_route_equals_numpy_oracle(kind):
    """The "int" chain through one prepared C++ oneDNN conv2d (spread / depth-gathered input,
    a_zp-filled; what qref runs for the vnni class) gives the numpy oracle's bytes."""
    _vnni_host()
    for seed in range(20):
        op = _core_operands(kind, seed)
        O, Cg = op["w"].shape[:2]
        plan, chain = onednn_nd.plan_nd(op["transposed"], op["x_cl"].ndim - 2, op["groups"], Cg, O // op["groups"],
                                        op["w"].shape[2:], op["stride"], op["dilation"])
        got = onednn_nd.run(op["x_cl"], op["a_s"], op["a_zp"], op["w"], op["ws"], op["bias"], op["stride"],
                            op["padding"], op["dilation"], op["groups"], op["out_spatial"], op["out_s"],
                            op["out_zp"], op["relu"], op["transposed"], "auto")
        ref = _oracle_run(**op, combined=plan.combined_scale, divide_dst=plan.divide_dst, chain=chain)
        assert_same(got, ref, f"{kind} seed={seed} core route vs numpy oracle")


# ----------------------------------------------------------------------------- Linear under the "onednn" engine


def _linear_case(seed: int):
    r = np.random.default_rng(seed)
    K = int(r.choice([1, 3, 8, 17, 64, 200, 1000]))
    O = int(r.choice([1, 4, 16, 33]))
    a_s, o_s = float(r.choice(_A_SCALES)), float(r.choice(_O_SCALES))
    tie = seed % 3 != 0
    wmax = 3 if tie else 127
    m_pow = 2.0 ** -float(max(1, round(np.log2(np.sqrt(K) * 74 * wmax / 60))))
    w_s = float(np.float32(o_s * m_pow / a_s)) if tie else float(r.uniform(0.001, 0.02))
    wi = torch.from_numpy(r.integers(-wmax, wmax + 1, (O, K)).astype(np.int8))
    if bool(r.integers(0, 2)):
        qw = torch._make_per_channel_quantized_tensor(wi, torch.from_numpy(w_s * r.choice([1.0, 0.5, 2.0], O)),
                                                      torch.zeros(O, dtype=torch.long), 0)
    else:
        qw = torch._make_per_tensor_quantized_tensor(wi, w_s, 0)
    b = None
    if r.random() < 0.8:
        b = torch.from_numpy((np.float32(o_s) * r.integers(-40, 40, O).astype(np.float32)) if tie
                             else r.normal(0, 1, O).astype(np.float32))
    m = (nniq.LinearReLU if r.integers(0, 2) else nnq.Linear)(K, O)
    m.set_weight_bias(qw, b)
    m.scale, m.zero_point = o_s, int(r.integers(0, 256))
    shape = [(int(r.choice([1, 7, 64, 300])), K), (4, 25, K), (3, 10, 2, K)][seed % 3]
    qx = torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(r.integers(0, 256, shape).astype(np.uint8)), a_s, int(r.integers(0, 256)))
    return m, qx


@pytest.fixture
def _onednn_engine():
    with quantized_engine("onednn"):
        yield


def test_linear_onednn_engine_vs_torch(_onednn_engine):
    """Linear packed under the "onednn" engine runs oneDNN's brg_matmul: the conv arithmetic with the
    weight scale's reciprocal round trip; from_torch(module) and qref.linear(engine="onednn") give
    torch's bytes, and the plain weight scale (the conv's) would not. On an AMX host oneDNN runs an AMX
    matmul build (float zero-point compensation, one combined scale) or its AVX-512 VNNI build per shape:
    qref follows the name its log gives (from_torch params read it; qref.linear takes it)."""
    _vnni_host()
    from qref import _core
    from qref.bridge.onednn_verbose import module_kernel
    from qref.engines.onednn.kernel_names import is_amx_build

    amx_host = onednn.onednn_isa().effective == "amx"
    plain_wrong = 0
    builds = set()
    for seed in range(40):
        m, qx = _linear_case(seed)
        t = m(qx).int_repr().numpy()
        p = qref.from_torch(m)
        w = m.weight()
        if not bool((w.int_repr() != 0).any()):
            continue  # zero weights: both engines agree (the probe calls such a module fbgemm)
        assert p.engine == "onednn"
        k = module_kernel(m, qx) if amx_host else None
        amx = is_amx_build(k)
        builds.add(amx)
        assert_same(p(qx).int_repr().numpy(), t, f"linear seed={seed} kernel={k}")
        assert_same(qref.linear(qx, w, m.bias(), output_scale=m.scale, output_zero_point=m.zero_point,
                                relu=isinstance(m, nniq.LinearReLU), engine="onednn",
                                onednn_kernel=k).int_repr().numpy(), t, f"qref.linear seed={seed} kernel={k}")
        # the alternative: the conv's plain f32(w_scale)
        ws = (w.q_per_channel_scales().numpy() if w.qscheme() == torch.per_channel_affine
              else np.full(m.out_features, w.q_scale()))
        K = m.in_features
        x2 = qx.int_repr().numpy().reshape(-1, 1, 1, K)
        prep = onednn.prepare_conv2d(x2.shape, w.int_repr().numpy().reshape(-1, 1, 1, K), m.bias(), (1, 1), (0, 0),
                                     (1, 1), 1, qx.q_scale(), qx.q_zero_point(), ws, True, m.scale, m.zero_point,
                                     isinstance(m, nniq.LinearReLU),
                                     onednn.OnednnPlan("amx" if amx else "vnni", "x", False, amx, amx, True))
        alt = _core.conv2d_run(prep, np.ascontiguousarray(x2), 1).reshape(t.shape)
        plain_wrong += int((alt != t).sum())
    assert plain_wrong > 0, "the cases do not discriminate the weight-scale round trip"
    if amx_host:
        assert builds == {True, False}, "oneDNN ran one matmul build for all of these linears"
        with pytest.raises(qref.OneDNNNotSupportedError, match="onednn_kernel"):
            qref.linear(qx, w, m.bias(), output_scale=m.scale, output_zero_point=m.zero_point, engine="onednn")


def test_check_onednn_engine_model(_onednn_engine):
    """qref.check on a model converted under engine "onednn" (Conv2d + Linear) verifies every layer."""
    _vnni_host()
    import torch.nn as nn
    from torch.ao.quantization import DeQuantStub, QuantStub, convert, get_default_qconfig, prepare

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.conv, self.fc, self.dq = QuantStub(), nn.Conv2d(3, 8, 3), nn.Linear(8 * 6 * 6, 10), DeQuantStub()

        def forward(self, x):
            return self.dq(self.fc(torch.flatten(self.conv(self.q(x)), 1)))

    torch.manual_seed(0)
    net = Net().eval()
    net.qconfig = get_default_qconfig("onednn")
    prepared = prepare(net)
    x = torch.randn(4, 3, 8, 8)
    prepared(x)
    rep = qref.check(convert(prepared), x)
    status = {r.name: (r.status, r.path) for r in rep.layers}
    assert status["conv"] == ("ok", "oneDNN") and status["fc"][0] == "ok", str(rep)


def test_engine_probe_input_fits_transposed_padding():
    """A transposed conv whose padding needs an input of >= 5 per dimension: the engine probe sizes
    its input for an output of at least 1 (it used to crash inside torch)."""
    _vnni_host()
    m = nnq.ConvTranspose2d(2, 2, 1, stride=1, padding=2)
    m.set_weight_bias(torch._make_per_tensor_quantized_tensor(
        torch.tensor([[[[3]], [[-2]]], [[[1]], [[4]]]], dtype=torch.int8), 0.02, 0), None)
    m.scale, m.zero_point = 0.05, 10
    x = torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 2, 6, 6)).astype(np.uint8)), 0.01, 0)
    p = qref.from_torch(m)
    assert p.engine == "onednn"
    assert_same(p(x).int_repr().numpy(), m(x).int_repr().numpy(), "padding 2, kernel 1")


def test_conv1d_onednn_intermediates():
    """conv1d(engine='onednn', return_intermediates=True): oneDNN's stages with the unit height removed."""
    _vnni_host()
    r = np.random.default_rng(1)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(r.integers(0, 256, (2, 4, 9)).astype(np.uint8)),
                                                 0.02, 3)
    w = torch._make_per_tensor_quantized_tensor(torch.from_numpy(r.integers(-9, 10, (8, 4, 3)).astype(np.int8)),
                                                0.01, 0)
    out, it = qref.conv1d(qx, w, None, padding=1, output_scale=0.05, output_zero_point=10, engine="onednn",
                          return_intermediates=True)
    ref = qref.conv1d(qx, w, None, padding=1, output_scale=0.05, output_zero_point=10, engine="onednn")
    assert_same(out.int_repr().numpy(), ref.int_repr().numpy(), "conv1d intermediates run")
    assert it.acc.shape == it.colsum.shape == it.A.shape == it.y.shape == (2, 8, 9)
    assert_same(np.rint(np.clip(it.y, 0, 255)).astype(np.uint8), out.int_repr().numpy(), "y rounds to the output")


def test_check_names_torch_onednn_defects():
    """torch 2.13's oneDNN gets some convs wrong from the first call (found by fuzzing: a depthwise
    1x1 conv with padding on brdgmm_dw; brg_conv_fwd with one input channel per group where outputs
    read only padding). check() reports TORCH_WRONG, measured: qref within a step of the layer
    computed in float, torch many steps off."""
    _vnni_host()
    import torch.nn as nn

    torch.manual_seed(0)
    C = 16
    m = nniq.ConvReLU2d(C, C, 1, padding=(2, 0), groups=C)
    w = torch.quantize_per_channel(torch.randn(C, 1, 1, 1) * 0.5, torch.rand(C, dtype=torch.double) * 0.01 + 0.002,
                                   torch.zeros(C, dtype=torch.long), 0, torch.qint8)
    m.set_weight_bias(w, torch.randn(C) * 0.2)
    m.scale, m.zero_point = 0.02, 0
    x = torch.quantize_per_tensor(torch.randn(1, C, 16, 16), 0.03, 60, torch.quint8)
    row = qref.check(nn.Sequential(m), x).layers[0]
    assert row.status == "TORCH_WRONG" and row.mismatches > 0, row
    assert "quantization steps from the layer computed in float" in row.reason


def _small_layer(m, w_shape, out_zp, x_shape, x_zp):
    """``m`` with small int8 weights of ``w_shape`` (scale 0.01, no bias), output (0.05, out_zp), and a
    quint8 input of ``x_shape`` (scale 0.02, x_zp); both drawn from one seeded generator."""
    r = np.random.default_rng(0)
    m.set_weight_bias(torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(r.integers(-20, 21, w_shape).astype(np.int8)), 0.01, 0), None)
    m.scale, m.zero_point = 0.05, out_zp
    x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(r.integers(0, 256, x_shape).astype(np.uint8)),
                                                0.02, x_zp)
    return m, x


def test_onednn_defect_never_excuses_one_step():
    """The float-reference verdict needs torch >= 3 steps off and qref <= 1: a one-step difference
    (what a wrong requantization variant would give) stays a MISMATCH."""
    from qref.check import _float_reference, _onednn_defect

    m, x = _small_layer(nnq.Conv2d(4, 8, 3, padding=1), (8, 4, 3, 3), 100, (1, 4, 6, 6), 3)
    ref = _float_reference(m, x)
    off1 = ref.copy()
    off1[0, 0, 0, 0] += 1
    off1[0, 1, 2, 3] -= 1
    bad = np.argwhere(off1 != ref)
    assert _onednn_defect(m, x, ref, off1, bad) is None  # torch one step off: not excused
    assert _onednn_defect(m, x, off1, ref, bad) is None  # qref one step off: not excused
    far = ref.copy()
    far[0, 0, 0, 0] = (int(far[0, 0, 0, 0]) + 40) % 256
    assert _onednn_defect(m, x, ref, far, np.argwhere(far != ref))


def test_zero_weights_negative_bias_refused_with_the_reason():
    """All-zero weights with a bias that is never positive leave the value probe inconclusive (both
    engines answer 0): a oneDNN-packed module is still recognised from oneDNN's log (and computed
    right), and where nothing tells (Linear under "x86", which runs fbgemm) from_torch refuses saying
    why, not with out-of-date advice."""
    from qref.torch_bridge import UnsupportedModuleError

    x = {3: torch.quantize_per_tensor(torch.rand(1, 4, 9), 0.05, 7, torch.quint8),
         4: torch.quantize_per_tensor(torch.rand(1, 4, 9, 9), 0.05, 7, torch.quint8)}
    for m in (nnq.Conv1d(4, 4, 3), nnq.Conv2d(4, 4, 3), nnq.ConvTranspose2d(4, 4, 3), nnq.Linear(4, 4)):
        m.set_weight_bias(torch._make_per_tensor_quantized_tensor(torch.zeros(tuple(m.weight().shape),
                                                                              dtype=torch.int8), 0.01, 0),
                          torch.full((4,), -0.3))
        if isinstance(m, nnq.Linear):
            with pytest.raises(UnsupportedModuleError, match="engine probe .* was inconclusive"):
                qref.from_torch(m)
            continue
        if onednn.onednn_isa().effective != "vnni":
            continue
        p = qref.from_torch(m)
        assert p.engine == "onednn"
        qx = x[m.weight().dim()]
        assert_same(p(qx).int_repr().numpy(), m(qx).int_repr().numpy(), f"zero weights {type(m).__name__}")


def test_onednn_kernel_errors_name_the_function_and_need_onednn():
    """onednn_kernel refusals name the public function; a name where the layer runs fbgemm is an error."""
    r = np.random.default_rng(1)
    q = dict(input_scale=0.02, input_zero_point=9, weight_scale=0.01, weight_zero_point=0, output_scale=0.3,
             output_zero_point=77)
    x1 = r.integers(0, 256, (1, 4, 9), dtype=np.uint8)
    w1 = r.integers(-128, 128, (4, 4, 3), dtype=np.int8)
    with pytest.raises((qref.OneDNNNotSupportedError, ValueError), match="^conv1d: onednn_kernel='bogus'"):
        qref.conv1d(x1, w1, None, onednn_kernel="bogus", engine="onednn", **q)
    with pytest.raises((qref.OneDNNNotSupportedError, ValueError), match="^conv_transpose1d: onednn_kernel='bogus'"):
        qref.conv_transpose1d(x1, w1, None, onednn_kernel="bogus", engine="onednn", **q)
    with pytest.raises(ValueError, match="^conv1d: onednn_kernel='brg_conv_fwd:avx512_core_vnni' with engine='fbgemm'"):
        qref.conv1d(x1, w1, None, onednn_kernel="brg_conv_fwd:avx512_core_vnni", **q)
    with pytest.raises(ValueError, match="^linear: onednn_kernel='brg_matmul:avx512_core_vnni' with engine='x86'"):
        qref.linear(r.integers(0, 256, (3, 8), dtype=np.uint8), r.integers(-128, 128, (4, 8), dtype=np.int8),
                    onednn_kernel="brg_matmul:avx512_core_vnni", engine="x86", **q)


def test_engine_probe_reads_onednn_log_where_values_mislead():
    """A depthwise 1x1x1 Conv3d with padding under the x86 engine: torch/oneDNN computes wrong values
    there, which fooled the value probe into 'fbgemm'; the probe reads oneDNN's log first."""
    _vnni_host()
    from qref.torch_bridge import packed_engine

    torch.manual_seed(0)
    m = nnq.Conv3d(16, 16, 1, stride=(2, 2, 3), padding=(0, 2, 0), groups=16)
    m.set_weight_bias(torch.quantize_per_tensor(torch.randn(16, 1, 1, 1, 1) * 0.3, 0.01, 0, torch.qint8), None)
    assert packed_engine(m) == "onednn"
    x = torch.quantize_per_tensor(torch.randn(1, 16, 4, 6, 6), 0.05, 60, torch.quint8)
    m.scale, m.zero_point = 0.03, 70
    row = qref.check(torch.nn.Sequential(m), x).layers[0]
    assert row.path == "oneDNN" and row.status in ("ok", "TORCH_WRONG"), row


def test_kernel_names_checked_part_by_part():
    """Only names as the vnni class's oneDNN log prints them are followed; made-up or mixed-ISA
    composites are refused (a review found them accepted)."""
    from qref.engines.onednn.kernel_names import checked_kernel

    ok = [("brg_deconv:avx512_core_vnni+brgconv_strided:avx512_core_vnni", "deconvolution"),
          ("conv:any+x64:gemm_s8u8s32:jit", "deconvolution"), ("x64:gemm_s8u8s32:jit", "convolution"),
          ("ref:any", "convolution"), ("brg_matmul:avx512_core_vnni", "matmul")]
    for name, prim in ok:
        assert checked_kernel("f", name, prim, "vnni") == name
    bad = [("brg_conv_fwd", "convolution"), ("brg_conv_fwd:avx512_core_vnni+brg_conv_fwd:avx512_core", "convolution"),
           ("brg_deconv:avx512_core_vnni+jit_uni_int8:sse41", "deconvolution"),
           ("conv:any+jit_uni_int8:avx2", "deconvolution"), ("ref:avx2", "convolution"),
           ("x64:gemm_s8u8s32:avx2", "convolution"), ("conv:anything_else", "deconvolution")]
    for name, prim in bad:
        with pytest.raises(qref.OneDNNNotSupportedError, match=re.escape(f"onednn_kernel='{name}'")):
            checked_kernel("f", name, prim, "vnni")


def test_unreached_outputs_of_transposed_convs():
    """A transposed conv whose stride exceeds its kernel leaves outputs that no input reaches: their
    value is the bias alone. torch/oneDNN (jit_deconvolution) leaves them uninitialized (a review saw
    values one step off, run to run); check() names that, and only that, as torch's."""
    from qref.check import _onednn_defect, _unreached_outputs

    m, qx = _small_layer(nnq.ConvTranspose2d(4, 4, (1, 2), stride=(3, 5), groups=4), (4, 1, 1, 2), 59,
                         (1, 4, 3, 3), 7)
    un = _unreached_outputs(m, tuple(qx.shape))
    assert un.shape == (7, 12) and un[1].all() and not un[0].all()  # rows 1, 2, 4, 5 receive nothing
    got = qref.from_torch(m)(qx).int_repr().numpy() if onednn.onednn_isa().effective == "vnni" else None
    if got is None:
        got = qref.conv_transpose2d(qx, m.weight(), None, stride=(3, 5), groups=4, output_scale=0.05,
                                    output_zero_point=59).int_repr().numpy()
    off = got.copy()
    off[0, :, 1, :] += 1  # garbage one step off on an unreached row
    assert "no input pixel reaches" in _onednn_defect(m, qx, got, off, np.argwhere(off != got))
    off2 = got.copy()
    off2[0, 0, 0, 0] += 1  # a reached output one step off: not excused
    assert _onednn_defect(m, qx, got, off2, np.argwhere(off2 != got)) is None
