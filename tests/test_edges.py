"""Semantics at the edges, against real torch (fbgemm engine), under the default ISA
and in a subprocess with FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (the AVX2 arithmetic on a
VNNI host), with every usable qref kernel:

- all-255 / all-0 inputs with extreme weights (-128 / 127), activation zero point 0 and 255;
- an output scale so small that |y| >= 2^31: fbgemm's cvtps2dq gives INT32_MIN, so the
  output is 0 (out_zp with ReLU) even for huge positive values (docs/numerics.md §5.4);
- K so large that the int32 accumulator wraps (vpdpbusd / vpaddd wrap; with AVX2 the
  saturated int16 pairs wrap later);
- ReLU with output zero point 255; per-channel weight zero points at -128 / 127;
- layouts (negative strides, non-contiguous, channels_last), N = 0, H = 0 with padding;
- qref.quantize vs torch.quantize_per_tensor at rounding boundaries, NaN, ±inf, huge.

Run as a script (``python test_edges.py in.json out.npz``) it is the subprocess worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
AVX2_ENV = {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}

# ----------------------------------------------------------------------------- cases


def case(name, **kw):
    c = dict(name=name, N=1, C=16, H=6, W=6, O=16, KH=3, KW=3, stride=1, padding=1, dilation=1, groups=1,
             x=["const", 255], w=["const", 127], a_scale=0.05, a_zp=0, w_scale=0.01, w_zp=0, bias=None,
             out_scale=None, out_zp=0, relu=False)
    c.update(kw)
    return c


def _paths(name, **kw):
    """The same edge on each fbgemm path: im2col, pointwise, depthwise, groupwise."""
    return [
        case(f"{name}-im2col", KH=5, KW=5, padding=2, **kw),  # 3x3 pad 1 with Cg == Og would be groupwise
        case(f"{name}-pointwise", KH=1, KW=1, padding=0, **kw),
        case(f"{name}-depthwise", groups=16, **kw),
        case(f"{name}-groupwise", groups=4, **kw),
    ]


EXTREME = ["choice", [-128, 127], 3]  # random mix of the two weight extremes
EDGE_CASES = (
    _paths("x255-w127", out_scale=2000.0, out_zp=7)
    + _paths("x255-w-128", w=["const", -128], out_scale=2000.0, out_zp=250)
    + _paths("x255-wmix", w=EXTREME, out_scale=300.0, out_zp=128)
    + _paths("x255-wmix-azp255", w=EXTREME, a_zp=255, out_scale=300.0, out_zp=128)
    + _paths("x0-wmix-azp255", x=["const", 0], w=EXTREME, a_zp=255, out_scale=300.0, out_zp=128)
    + _paths("x0-w127-azp0", x=["const", 0], out_scale=1.0, out_zp=9)
    + _paths("xrand-wmix-azp0", x=["rand", 5], w=EXTREME, out_scale=300.0, out_zp=100)
    + _paths("xrand-wmix-azp255", x=["rand", 6], w=EXTREME, a_zp=255, out_scale=300.0, out_zp=100)
    # per-channel weight zero points at the ends of int8
    + _paths("wzp-extremes", x=["rand", 7], w=["rand", 8], w_scale=["rand", 9],
             w_zp=[-128, 127] * 8, out_scale=400.0, out_zp=128)
    + _paths("wzp-extremes-azp255-relu", x=["rand", 10], w=EXTREME, a_zp=255, w_scale=["rand", 11],
             w_zp=[127, -128] * 8, out_scale=900.0, out_zp=60, relu=True)
    # |y| >= 2^31: cvtps2dq's INT32_MIN -> 0 (relu: out_zp), for positive and negative y
    + _paths("overflow-y", x=["rand", 12], w=EXTREME, out_scale=1e-9, out_zp=100)
    + _paths("overflow-y-relu", x=["rand", 13], w=EXTREME, out_scale=1e-9, out_zp=100, relu=True)
    + _paths("overflow-y-bias", x=["const", 0], w=["const", 0], bias=["const", 1e6], w_scale=1e-3,
             out_scale=1e-4, out_zp=3)
    # ReLU with output zero point 255 (everything clamps to 255) and 0
    + _paths("relu-zp255", x=["rand", 14], w=["rand", 15], out_scale=20.0, out_zp=255, relu=True)
    + _paths("relu-zp0", x=["rand", 16], w=["rand", 17], bias=["rand", 18], out_scale=20.0, out_zp=0, relu=True)
    + [
        # K large enough that the int32 accumulator wraps: 255*127*K > 2^31 (exact
        # products, K=72000) and 32767*K/2 > 2^31 (saturated AVX2 pairs, K=270000).
        case("wrap-k72000", C=8000, O=2, H=3, W=3, padding=0, out_scale=1000.0, out_zp=128),
        case("wrap-k72000-azp255", C=8000, O=2, H=3, W=3, padding=0, x=["const", 0], w=["const", -128], a_zp=255,
             out_scale=1000.0, out_zp=128),
        case("wrap-k270000", C=30000, O=2, H=3, W=3, padding=0, out_scale=1000.0, out_zp=128),
        case("wrap-k270000-pc", C=30000, O=2, H=3, W=3, padding=0, w=EXTREME, w_scale=[0.01, 0.02], w_zp=[-128, 127],
             out_scale=1000.0, out_zp=128),
        case("wrap-k270000-pointwise", C=270000, O=2, H=1, W=1, KH=1, KW=1, padding=0, out_scale=1000.0, out_zp=64),
    ]
)


def build_case(c: dict) -> dict:
    """Arrays of a case, deterministic in its description (same in any process)."""
    N, C, H, W, O, KH, KW, G = (c[k] for k in ("N", "C", "H", "W", "O", "KH", "KW", "groups"))

    def fill(spec, shape, dtype, lo, hi):
        kind = spec[0]
        if kind == "const":
            return np.full(shape, spec[1], dtype)
        if kind == "rand":
            return np.random.default_rng(spec[1]).integers(lo, hi + 1, shape).astype(dtype)
        if kind == "choice":
            return np.random.default_rng(spec[2]).choice(np.array(spec[1]), size=shape).astype(dtype)
        raise ValueError(spec)

    x = fill(c["x"], (N, C, H, W), np.uint8, 0, 255)
    w = fill(c["w"], (O, C // G, KH, KW), np.int8, -128, 127)
    ws = c["w_scale"]
    per_channel = isinstance(ws, list) or isinstance(c["w_zp"], list)
    if isinstance(ws, list) and ws[0] == "rand":
        ws = np.random.default_rng(ws[1]).uniform(0.001, 0.02, O).astype(np.float32).astype(np.float64)
    elif per_channel:
        ws = np.broadcast_to(np.asarray(ws, np.float64), (O,)).copy()
    wz = np.broadcast_to(np.asarray(c["w_zp"], np.int64), (O,)).copy() if per_channel else int(c["w_zp"])
    bias = None
    if c["bias"] is not None:
        if c["bias"][0] == "const":
            bias = np.full(O, c["bias"][1], np.float32)
        else:
            bias = np.random.default_rng(c["bias"][1]).normal(0, 50, O).astype(np.float32)
    return dict(x=x, w=w, w_scale=ws, w_zp=wz, per_channel=per_channel, bias=bias)


def torch_case(c: dict, b: dict) -> np.ndarray:
    import torch

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["x"]), c["a_scale"], c["a_zp"])
        if b["per_channel"]:
            qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(b["w"]), torch.from_numpy(b["w_scale"]),
                                                          torch.from_numpy(b["w_zp"]), 0)
        else:
            qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["w"]), b["w_scale"], b["w_zp"])
        bias = None if b["bias"] is None else torch.from_numpy(b["bias"])
        st, pd, dl = ([c[k]] * 2 for k in ("stride", "padding", "dilation"))
        pp = torch.ops.quantized.conv2d_prepack(qw, bias, st, pd, dl, c["groups"])
        op = torch.ops.quantized.conv2d_relu if c["relu"] else torch.ops.quantized.conv2d
        return op(qx, pp, c["out_scale"], c["out_zp"]).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = prev


def qref_case(c: dict, b: dict, kernel: str = "auto", isa: str = "auto") -> np.ndarray:
    import qref

    return qref.conv2d(b["x"], b["w"], b["bias"], stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                       groups=c["groups"], input_scale=c["a_scale"], input_zero_point=c["a_zp"],
                       weight_scale=b["w_scale"], weight_zero_point=b["w_zp"], output_scale=c["out_scale"],
                       output_zero_point=c["out_zp"], relu=c["relu"], kernel=kernel, isa=isa)


def run_cases_in_subprocess(cases: list[dict], env: dict[str, str]) -> list[dict]:
    """torch and qref (every usable kernel, isa="auto") for each case in a fresh
    interpreter whose environment is set before torch is imported."""
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "cases.json"), os.path.join(d, "out.npz")
        with open(inp, "w") as f:
            json.dump(cases, f)
        e = dict(os.environ)
        e.update(env)
        r = subprocess.run([sys.executable, os.path.abspath(__file__), inp, out], env=e, capture_output=True,
                           text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"edge worker failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        z = np.load(out, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return [dict(torch=z[f"t{i}"], qref={k: z[f"q{i}_{k}"] for k in meta["kernels"]}, isa=meta["isa"])
                for i in range(len(cases))]


def _worker(inp: str, out: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import torch  # noqa: F401  (after the environment is set)

    import qref

    with open(inp) as f:
        cases = json.load(f)
    arrays = {}
    for i, c in enumerate(cases):
        b = build_case(c)
        arrays[f"t{i}"] = torch_case(c, b)
        for k in qref.kernels():
            arrays[f"q{i}_{k}"] = qref_case(c, b, kernel=k)
    np.savez(out, meta=json.dumps(dict(kernels=qref.kernels(), isa=str(qref.torch_isa()))), **arrays)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
    sys.exit(0)

# ----------------------------------------------------------------------------- tests

import pytest  # noqa: E402

import qref  # noqa: E402
from oracle import assert_same  # noqa: E402


@pytest.fixture(scope="module")
def torch():
    t = pytest.importorskip("torch")
    return t


def _what(c, k, isa):
    return f"{c['name']} kernel={k} isa={isa}"


@pytest.mark.parametrize("c", EDGE_CASES, ids=[c["name"] for c in EDGE_CASES])
def test_edge_vs_torch_default_isa(torch, c):
    b = build_case(c)
    expected = torch_case(c, b)
    for k in qref.kernels():
        assert_same(qref_case(c, b, kernel=k), expected, _what(c, k, "auto"))


def test_edges_vs_torch_avx2_subprocess(torch):
    """All edge cases in one fresh interpreter with FBGEMM_ENABLE_INSTRUCTIONS=AVX2."""
    res = run_cases_in_subprocess(EDGE_CASES, AVX2_ENV)
    for c, r in zip(EDGE_CASES, res):
        for k, got in r["qref"].items():
            assert_same(got, r["torch"], _what(c, k, r["isa"]))


def test_edges_isa_avx2_in_process_matches_subprocess(torch):
    """isa='avx2' in this process reproduces the AVX2 subprocess's torch for the GEMM and
    depthwise paths (groupwise follows the CPU, not the env: docs/numerics.md §4.0)."""
    cases = [c for c in EDGE_CASES if not c["name"].endswith("groupwise") and c["name"].startswith(("wrap", "x255"))]
    res = run_cases_in_subprocess(cases, AVX2_ENV)
    for c, r in zip(cases, res):
        assert_same(qref_case(c, build_case(c), isa="avx2"), r["torch"], _what(c, "auto", "avx2 in-process"))


def test_edges_are_real_edges(torch):
    """The cases exercise what they claim: each named path is taken, the accumulator wraps,
    y overflows, clamps bite."""
    by = {c["name"]: c for c in EDGE_CASES}
    for c in EDGE_CASES:
        path = c["name"].rsplit("-", 1)[-1]
        if path in ("im2col", "pointwise", "depthwise", "groupwise"):
            for isa in ("avx2", "vnni"):
                plan = qref.conv_plan((c["N"], c["C"], c["H"], c["W"]), (c["O"], c["C"] // c["groups"], c["KH"],
                                      c["KW"]), (c["stride"],) * 2, (c["padding"],) * 2, (c["dilation"],) * 2,
                                      c["groups"], isa=isa)
                assert plan.path == path, (c["name"], isa, str(plan))
    c = by["wrap-k72000"]
    _, inter = qref.conv2d(**_kw(c, build_case(c)), return_intermediates=True, isa="vnni")
    # exact products: 255*127*72000 = 2331720000 wraps to a negative int32
    assert (inter.acc == np.int64(255 * 127 * 72000 - 2**32)).all()
    c = by["wrap-k270000"]
    _, inter = qref.conv2d(**_kw(c, build_case(c)), return_intermediates=True, isa="avx2")
    # saturating pairs: 135000 pairs of sat16(2*255*127) = 32767, sum 4423545000 wraps
    assert (inter.acc == np.int64(32767 * 135000 - 2**32)).all()
    c = by["overflow-y-im2col"]
    out, inter = qref.conv2d(**_kw(c, build_case(c)), return_intermediates=True)
    assert (np.abs(inter.y) >= 2.0**31).mean() > 0.5
    assert (out[np.abs(inter.y) >= 2.0**31] == 0).all()
    c = by["relu-zp255-im2col"]
    assert (torch_case(c, build_case(c)) == 255).all()


def _kw(c, b):
    return dict(input=b["x"], weight=b["w"], bias=b["bias"], stride=c["stride"], padding=c["padding"],
                dilation=c["dilation"], groups=c["groups"], input_scale=c["a_scale"], input_zero_point=c["a_zp"],
                weight_scale=b["w_scale"], weight_zero_point=b["w_zp"], output_scale=c["out_scale"],
                output_zero_point=c["out_zp"], relu=c["relu"])


# ----------------------------------------------------------------------------- layouts and empty sizes


def _np_case(seed=0, N=2, C=8, H=7, W=9, O=8, k=3):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (N, C, H, W), dtype=np.uint8)
    w = rng.integers(-128, 128, (O, C, k, k), dtype=np.int8)
    bias = rng.normal(0, 2, O).astype(np.float32)
    kw = dict(padding=1, input_scale=0.03, input_zero_point=11, weight_scale=rng.uniform(0.002, 0.01, O),
              weight_zero_point=np.zeros(O, np.int64), output_scale=0.4, output_zero_point=77)
    return x, w, bias, kw


def test_noncontiguous_and_negative_strides_same_bytes():
    x, w, bias, kw = _np_case()
    ref = qref.conv2d(x, w, bias, **kw)
    variants = {
        "x-negstride": (x[:, :, ::-1, ::-1][:, :, ::-1, ::-1], w, bias),
        "x-fortran": (np.asfortranarray(x), w, bias),
        "x-nhwc-view": (np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2), w, bias),
        "x-strided": (np.repeat(x, 2, axis=3)[:, :, :, ::2], w, bias),
        "w-negstride": (x, w[::-1][::-1], bias),
        "w-fortran": (x, np.asfortranarray(w), bias),
        "w-strided": (x, np.repeat(w, 2, axis=1)[:, ::2], bias),
        "bias-strided": (x, w, np.repeat(bias, 2)[::2]),
        "bias-negstride": (x, w, bias[::-1].copy()[::-1]),
        "readonly": tuple(_readonly(a) for a in (x, w, bias)),
    }
    for name, (xv, wv, bv) in variants.items():
        assert_same(qref.conv2d(xv, wv, bv, **kw), ref, name)
    # a negative-stride view with different content is really read through its strides
    flipped = qref.conv2d(x[:, :, ::-1], w, bias, **kw)
    assert_same(flipped, qref.conv2d(np.ascontiguousarray(x[:, :, ::-1]), w, bias, **kw), "x-flipped")


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def test_channels_last_torch_same_bytes_as_torch(torch):
    x, w, bias, kw = _np_case(1)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), kw["input_scale"], kw["input_zero_point"])
    qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.from_numpy(kw["weight_scale"]),
                                                  torch.zeros(8, dtype=torch.long), 0)
    torch.backends.quantized.engine = "fbgemm"
    pp = torch.ops.quantized.conv2d_prepack(qw, torch.from_numpy(bias), [1, 1], [1, 1], [1, 1], 1)
    expected = torch.ops.quantized.conv2d(qx, pp, kw["output_scale"], kw["output_zero_point"])
    okw = dict(padding=1, output_scale=kw["output_scale"], output_zero_point=kw["output_zero_point"])
    for name, xin, win in [
        ("contiguous", qx, qw),
        ("x-channels_last", qx.contiguous(memory_format=torch.channels_last), qw),
        ("w-channels_last", qx, qw.contiguous(memory_format=torch.channels_last)),
        ("x-strided", _qslice(torch, x, kw), qw),
    ]:
        got = qref.conv2d(xin, win, torch.from_numpy(bias), **okw)
        assert got.dtype == torch.quint8 and got.q_scale() == expected.q_scale()
        assert got.q_zero_point() == expected.q_zero_point()
        assert_same(got.int_repr().numpy(), expected.int_repr().numpy(), name)
    # torch's own channels_last input gives the same bytes in torch too
    e2 = torch.ops.quantized.conv2d(qx.contiguous(memory_format=torch.channels_last), pp, kw["output_scale"],
                                    kw["output_zero_point"])
    assert_same(e2.int_repr().numpy(), expected.int_repr().numpy(), "torch channels_last")


def _qslice(torch, x, kw):
    """A non-contiguous quantized view (every other column of a wider tensor)."""
    wide = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.repeat(x, 2, axis=3)), kw["input_scale"],
                                                   kw["input_zero_point"])
    v = wide[:, :, :, ::2]
    assert not v.is_contiguous()
    return v


def test_zero_batch_matches_torch(torch):
    """N = 0: torch returns an empty (0, O, OH, OW) quint8 tensor with the output qparams; so does qref."""
    x, w, bias, kw = _np_case(2)
    x0 = x[:0]
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x0), kw["input_scale"], kw["input_zero_point"])
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), 0.01, 0)
    torch.backends.quantized.engine = "fbgemm"
    pp = torch.ops.quantized.conv2d_prepack(qw, None, [2, 2], [1, 1], [1, 1], 1)
    expected = torch.ops.quantized.conv2d(qx, pp, 0.4, 77)
    got_t = qref.conv2d(qx, qw, stride=2, padding=1, output_scale=0.4, output_zero_point=77)
    assert tuple(got_t.shape) == tuple(expected.shape) == (0, 8, 4, 5)
    assert got_t.dtype == torch.quint8 and got_t.q_scale() == 0.4 and got_t.q_zero_point() == 77
    got_np = qref.conv2d(x0, w, stride=2, padding=1, input_scale=kw["input_scale"],
                         input_zero_point=kw["input_zero_point"], weight_scale=0.01, output_scale=0.4,
                         output_zero_point=77)
    assert got_np.shape == (0, 8, 4, 5) and got_np.dtype == np.uint8
    for k in qref.kernels():
        assert qref.conv2d(x0, w, stride=2, padding=1, input_scale=0.03, input_zero_point=11, weight_scale=0.01,
                           output_scale=0.4, output_zero_point=77, kernel=k, threads=3).shape == (0, 8, 4, 5)
    _, inter = qref.conv2d(x0, w, stride=2, padding=1, input_scale=0.03, input_zero_point=11, weight_scale=0.01,
                           output_scale=0.4, output_zero_point=77, return_intermediates=True)
    assert inter.acc.shape == (0, 8, 4, 5)
    # through the bridge (its second call takes the cached, prepared path)
    m = torch.ao.nn.quantized.Conv2d(8, 8, 3, stride=2, padding=1)
    p = qref.from_torch(m)
    for _ in range(2):
        got = p(qx)
        assert tuple(got.shape) == tuple(m(qx).shape) == (0, 8, 4, 5) and got.dtype == torch.quint8


def test_zero_height_with_padding_matches_torch(torch):
    """H = 0 with padding: torch computes the output from padded taps (all a_zp)."""
    rng = np.random.default_rng(3)
    x = np.zeros((1, 4, 0, 5), np.uint8)
    w = rng.integers(-128, 128, (4, 4, 1, 1), dtype=np.int8)
    bias = rng.normal(0, 1, 4).astype(np.float32)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.1, 3)
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), 0.01, 0)
    torch.backends.quantized.engine = "fbgemm"
    pp = torch.ops.quantized.conv2d_prepack(qw, torch.from_numpy(bias), [1, 1], [1, 1], [1, 1], 1)
    expected = torch.ops.quantized.conv2d(qx, pp, 0.05, 4).int_repr().numpy()
    assert expected.shape == (1, 4, 2, 7)
    for k in qref.kernels():
        got = qref.conv2d(x, w, bias, padding=1, input_scale=0.1, input_zero_point=3, weight_scale=0.01,
                          output_scale=0.05, output_zero_point=4, kernel=k)
        assert_same(got, expected, f"H=0 kernel={k}")


# ----------------------------------------------------------------------------- quantize


SPECIALS = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1.17e-38, 3.4e38, -3.4e38, 1e30,
                     -1e30, 2.0**31, -(2.0**31), 2.0**31 - 128, 2147483520.0, 2147483648.0, 4e9, -4e9, 1e10],
                    np.float32)


def _boundary_values(scale: float, zp: int) -> np.ndarray:
    """x near every rounding boundary (k + 0.5 - zp) * scale for outputs -2..257, ±4 ulp,
    plus near each integer and the clamp ends."""
    s32 = np.float32(scale)
    ks = np.arange(-3, 259, dtype=np.float64)
    centers = np.concatenate([(ks + 0.5 - zp) * float(s32), (ks - zp) * float(s32)]).astype(np.float32)
    vals = [centers]
    up, down = centers.copy(), centers.copy()
    for _ in range(4):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        vals += [up.copy(), down.copy()]
    return np.concatenate(vals)


QUANT_PARAMS = [(0.1, 0), (0.1, 128), (1.0 / 3.0, 255), (0.0078125, 62), (0.02, 95), (1e-5, 7), (12345.678, 200),
                (0.75, 1), (float(np.float32(0.1)), 17), (1e30, 0), (1e-30, 255)]


def _torch_quantize(torch, x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8).int_repr().numpy()


@pytest.mark.parametrize("scale,zp", QUANT_PARAMS, ids=[f"s{s:g}-zp{z}" for s, z in QUANT_PARAMS])
def test_quantize_boundaries_vs_torch(torch, scale, zp):
    x = np.concatenate([_boundary_values(scale, zp), SPECIALS])
    # odd length so fbgemm's masked tail is exercised too
    x = x[: x.size - (1 - x.size % 2)]
    expected = _torch_quantize(torch, x, scale, zp)
    got = qref.quantize(x, scale, zp)
    assert got.dtype == np.uint8 and got.shape == x.shape
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (f"{bad.size} of {x.size} differ; first x={x[bad[0]]!r}: qref {got[bad[0]]} vs torch "
                           f"{expected[bad[0]]}")


def test_quantize_specials_vs_torch(torch):
    """NaN -> 255 (min_ps(NaN, 2147483520) returns the bound), +inf -> 255, -inf -> 0; per element,
    also inside 4-D tensors, non-contiguous and channels_last inputs."""
    for scale, zp in [(0.1, 0), (0.1, 200), (3.0, 255), (1e-3, 1)]:
        expected = _torch_quantize(torch, SPECIALS, scale, zp)
        assert_same(qref.quantize(SPECIALS, scale, zp), expected, f"specials s={scale} zp={zp}")
    assert qref.quantize(np.array([np.nan, np.inf, -np.inf], np.float32), 0.1, 0).tolist() == \
        _torch_quantize(torch, np.array([np.nan, np.inf, -np.inf], np.float32), 0.1, 0).tolist()
    rng = np.random.default_rng(4)
    x = (rng.normal(0, 5, (2, 3, 5, 7)) * rng.choice([1, 1e12], (2, 3, 5, 7))).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    expected = _torch_quantize(torch, x, 0.05, 100)
    assert_same(qref.quantize(x, 0.05, 100), expected, "4-D")
    assert_same(qref.quantize(x[:, :, ::-1][:, :, ::-1], 0.05, 100), expected, "negative strides")
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    assert_same(qref.quantize(xt, 0.05, 100), expected, "torch channels_last")
    assert qref.quantize(np.zeros((0, 3), np.float32), 0.1, 0).shape == (0, 3)


def test_quantize_avx2_subprocess_same_as_default(torch):
    """The quantize kernel is fbgemm's, not gated by FBGEMM_ENABLE_INSTRUCTIONS (docs/numerics.md §7):
    torch under AVX2 gives what qref gives here."""
    code = ("import numpy as np, torch, sys; x = np.load(sys.argv[1]); "
            "np.save(sys.argv[2], torch.quantize_per_tensor(torch.from_numpy(x), 0.02, 95, torch.quint8)"
            ".int_repr().numpy())")
    x = np.concatenate([_boundary_values(0.02, 95), SPECIALS])
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "x.npy"), x)
        e = dict(os.environ, **AVX2_ENV)
        r = subprocess.run([sys.executable, "-c", code, os.path.join(d, "x.npy"), os.path.join(d, "y.npy")], env=e,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        expected = np.load(os.path.join(d, "y.npy"))
    assert_same(qref.quantize(x, 0.02, 95), expected, "quantize under AVX2 env")
