"""Every qref kernel gives the scalar reference's bytes (and torch's).

The scalar kernel (csrc/qref/fbgemm/kernels/conv2d_scalar.cc) is normative; the AVX2 and
AVX-512 VNNI kernels must equal it byte for byte for the same problem, under both
ISA semantics (isa="avx2": int16-saturating pairs on every path that has them;
isa="vnni": exact GEMM / groupwise). The grid sits around the vector widths the
kernels use (K steps of 4, 16/32 output channels per GEMM tile, 16 depthwise
channels per block, 4/8 rows per micro-tile): channels 1, 7, 8, 9, 15, 16, 17, 31,
32, 33; k 1/3/5/7; stride 1/2; padding 0/1/2; dilation 1/2; groups 1/2/depthwise;
H, W down to 1. Case ids name the edge (``c_eq_8-k3-s2-p1-d1-dw``).

The default run checks a representative subset; ``--runslow`` the whole grid.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle
import qref
from qref import _core

C_EDGES = {1: "c_eq_1", 7: "c_lt_8", 8: "c_eq_8", 9: "c_gt_8", 15: "c_lt_16", 16: "c_eq_16", 17: "c_gt_16",
           31: "c_lt_32", 32: "c_eq_32", 33: "c_gt_32"}
KS = (1, 3, 5, 7)
STRIDES = (1, 2)
PADS = (0, 1, 2)
DILATIONS = (1, 2)
GROUPS = ("g1", "g2", "dw")
ISAS = ("avx2", "vnni")


def grid_case(c: int, k: int, s: int, p: int, d: int, g: str) -> dict | None:
    """One grid point: (input channels, groups, output channels, H, W), or None if invalid.

    c is the per-group channel count for g1/g2 (so K = k*k*c sits on the edge) and
    the channel (= group) count for depthwise (the lanes sit on the edge)."""
    if g == "g1":
        C, G, O = c, 1, c
    elif g == "g2":
        C, G, O = 2 * c, 2, 2 * c
    else:
        C, G, O = c, c, c
    span = d * (k - 1) + 1
    H = max(1, span - 2 * p)  # as small as the kernel allows (down to 1)
    W = H + 6  # several output columns: partial micro-tiles of rows
    return dict(C=C, G=G, O=O, H=H, W=W)


def case_id(c, k, s, p, d, g) -> str:
    return f"{C_EDGES[c]}-k{k}-s{s}-p{p}-d{d}-{g}"


def run_pair(kernel: str, isa: str, x, w, bias, stride, padding, dilation, groups, a_zp, w_scale, w_zp, out_scale,
             out_zp, relu, threads=1):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, input_scale=0.02,
              input_zero_point=a_zp, weight_scale=w_scale, weight_zero_point=w_zp, output_scale=out_scale,
              output_zero_point=out_zp, relu=relu, isa=isa)
    want = qref.conv2d(x, w, bias, kernel="scalar", threads=1, **kw)
    got = qref.conv2d(x, w, bias, kernel=kernel, threads=threads, **kw)
    return got, want


def operands(rng, N, C, H, W, O, Cg, k, w_zp_kind: str, bias: bool):
    x = rng.integers(0, 256, (N, C, H, W), dtype=np.uint8)
    w = rng.integers(-128, 128, (O, Cg, k, k), dtype=np.int8)
    w_scale = rng.uniform(0.002, 0.01, O)
    if w_zp_kind == "zero":
        w_zp = np.zeros(O, np.int32)
    else:  # non-zero weight zero points: the row-sum term is live
        w_zp = rng.integers(-12, 13, O).astype(np.int32)
    b = rng.normal(0, 40, O).astype(np.float32) if bias else None
    # about 40 output levels per standard deviation of the accumulator
    out_scale = float(0.02 * 0.006 * 74 * 128 * np.sqrt(k * k * Cg) / 40)
    return x, w, b, w_scale, w_zp, out_scale


def check_grid_point(kernel, c, k, s, p, d, g, isa, seed):
    pt = grid_case(c, k, s, p, d, g)
    rng = np.random.default_rng(seed)
    C, G, O, H, W = pt["C"], pt["G"], pt["O"], pt["H"], pt["W"]
    wzp = "nonzero" if seed % 3 == 0 else "zero"
    x, w, b, ws, wz, out_scale = operands(rng, 1, C, H, W, O, C // G, k, wzp, bias=seed % 4 != 1)
    got, want = run_pair(kernel, isa, x, w, b, s, p, d, G, int(rng.integers(0, 256)), ws, wz, out_scale,
                         int(rng.integers(0, 256)), relu=seed % 5 == 2)
    oracle.assert_same(got, want, f"kernel={kernel} isa={isa} {case_id(c, k, s, p, d, g)} seed={seed} "
                                  f"shape C={C} G={G} O={O} H={H} W={W}")


ALL_POINTS = [pt for pt in itertools.product(C_EDGES, KS, STRIDES, PADS, DILATIONS, GROUPS)
              if not (pt[5] == "g2" and pt[0] > 17)]  # g2 doubles C: keep its largest cases bounded


def _subset():
    """A representative subset for the default run: every channel edge with every group
    kind, each k, each stride/padding/dilation value, at a few combinations."""
    out = []
    for i, (c, g) in enumerate(itertools.product(C_EDGES, GROUPS)):
        if g == "g2" and c > 17:
            continue
        k = KS[i % 4]
        s = STRIDES[(i // 4) % 2]
        p = min(PADS[i % 3], (k - 1) // 2 + 1)
        d = DILATIONS[(i // 2) % 2] if k > 1 else 1
        out.append((c, k, s, p, d, g))
    # fbgemm's own fast paths at their vector edges (depthwise 3x3/5x5, pointwise, groupwise)
    out += [(16, 3, 1, 1, 1, "dw"), (32, 3, 2, 1, 1, "dw"), (33, 5, 1, 2, 1, "dw"), (8, 1, 1, 0, 1, "g1"),
            (32, 1, 1, 0, 1, "g1"), (33, 1, 1, 0, 1, "g2"), (16, 3, 1, 1, 1, "g2"), (8, 7, 2, 2, 1, "g1")]
    return out


SUBSET = _subset()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pt", SUBSET, ids=[case_id(*pt) for pt in SUBSET])
def test_grid_subset(simd_kernel, pt, isa):
    check_grid_point(simd_kernel, *pt, isa=isa, seed=SUBSET.index(pt))


@pytest.mark.slow
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pt", ALL_POINTS, ids=[case_id(*pt) for pt in ALL_POINTS])
def test_grid_full(simd_kernel, pt, isa):
    check_grid_point(simd_kernel, *pt, isa=isa, seed=ALL_POINTS.index(pt))


# ----------------------------------------------------------------------------- random cases


def random_case(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    kind = ["g1", "g2", "dw", "grouped"][seed % 4]
    k = int(rng.choice([1, 2, 3, 5, 7])), int(rng.choice([1, 3, 5]))
    if seed % 7 == 0:
        k = (k[0], k[0])
    d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    st = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    p = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
    cg = int(rng.integers(1, 40))
    if kind == "g1":
        G, C, O = 1, cg, int(rng.integers(1, 70))
    elif kind == "g2":
        G, C, O = 2, 2 * cg, 2 * int(rng.integers(1, 30))
    elif kind == "dw":
        G = int(rng.integers(1, 70))
        C, O = G, G * int(rng.choice([1, 1, 2, 3]))
    else:
        G = int(rng.choice([4, 8, 16, 32]))
        per = int(rng.choice([2, 4, 8, 16]))
        C, O = G * per, G * per
    H = max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]) + int(rng.integers(0, 12))
    W = max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]) + int(rng.integers(0, 12))
    N = int(rng.integers(1, 3))
    return dict(N=N, C=C, H=H, W=W, O=O, G=G, k=k, d=d, st=st, p=p, kind=kind)


def check_random(kernel: str, seed: int, isa: str) -> None:
    cs = random_case(seed)
    rng = np.random.default_rng(seed + 10_000)
    N, C, H, W, O, G = cs["N"], cs["C"], cs["H"], cs["W"], cs["O"], cs["G"]
    x = rng.integers(0, 256, (N, C, H, W), dtype=np.uint8)
    w = rng.integers(-128, 128, (O, C // G, *cs["k"]), dtype=np.int8)
    per_channel = seed % 2 == 0
    ws = rng.uniform(0.002, 0.01, O) if per_channel else 0.005
    wz = (rng.integers(-5, 6, O).astype(np.int32) if seed % 3 == 0 else np.zeros(O, np.int32)) if per_channel else \
        int(rng.integers(-3, 4))
    b = rng.normal(0, 30, O).astype(np.float32) if seed % 5 else None
    out_scale = float(0.02 * 0.006 * 74 * 128 * np.sqrt(cs["k"][0] * cs["k"][1] * C // G) / 30)
    got, want = run_pair(kernel, isa, x, w, b, cs["st"], cs["p"], cs["d"], G, int(rng.integers(0, 256)), ws, wz,
                         out_scale, int(rng.integers(0, 256)), relu=seed % 4 == 3, threads=1 + seed % 3)
    oracle.assert_same(got, want, f"kernel={kernel} isa={isa} random seed={seed} case={cs}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("seed", range(24))
def test_random(simd_kernel, seed, isa):
    check_random(simd_kernel, seed, isa)


@pytest.mark.slow
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("seed", range(24, 424))
def test_random_sweep(simd_kernel, seed, isa):
    check_random(simd_kernel, seed, isa)


# ----------------------------------------------------------------------------- semantics and extremes


@pytest.mark.parametrize("saturate", [True, False], ids=["saturate", "exact"])
@pytest.mark.parametrize("shape", [
    # (C, O, k, stride, pad, groups): each kernel code path under both semantics,
    # including the depthwise lanes with exact pairs (no fbgemm path does that, but
    # a kernel must still equal the scalar reference for any problem).
    (32, 32, 3, 1, 1, 32), (24, 48, 5, 2, 2, 24), (17, 17, 7, 1, 3, 17), (64, 48, 1, 1, 0, 1),
    (35, 20, 1, 1, 0, 1), (12, 40, 3, 2, 1, 1), (32, 32, 3, 1, 1, 8), (3, 64, 7, 2, 3, 1),
], ids=lambda v: "C{}-O{}-k{}-s{}-p{}-g{}".format(*v))
def test_core_both_semantics_extreme_operands(simd_kernel, shape, saturate):
    """_core directly with saturate on and off, extreme operands (255 activations,
    -128/127 weights: every pair saturates), zero-point extremes."""
    kernel = simd_kernel
    C, O, k, s, p, G = shape
    rng = np.random.default_rng(C * 1000 + O)
    x = np.where(rng.random((2, 9, 11, C)) < 0.7, 255, rng.integers(0, 256, (2, 9, 11, C))).astype(np.uint8)
    w = rng.choice(np.array([-128, 127, -127, 126, 0], np.int8), size=(O, k, k, C // G))
    ws = rng.uniform(0.001, 0.01, O)
    wz = rng.choice(np.array([-128, 127, 0, 5], np.int32), size=O).astype(np.int32)
    b = rng.normal(0, 30, O).astype(np.float32)
    # raw ~ sum (x - 255)(w - w_zp): about 40 output levels per standard deviation
    out_scale = float(0.05 * 0.0055 * np.sqrt(0.3 * k * k * C // G) * 110 * 150 / 40)
    args = (x, w, b, (s, s), (p, p), (1, 1), G, 0.05, 255, ws, wz, True, out_scale, 128, False, saturate)
    want = _core.conv2d_nhwc(*args, "scalar", 1)
    got = _core.conv2d_nhwc(*args, kernel, 2)
    oracle.assert_same(got, want, f"kernel={kernel} saturate={saturate} {shape}")
    assert len(np.unique(want)) > 2, "test operands should not saturate every output"


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7, 16])
def test_thread_count_does_not_change_bytes(kernel, threads):
    """Output rows are split across threads; the bytes must not depend on the split."""
    rng = np.random.default_rng(threads)
    for C, O, k, G, H in [(32, 48, 3, 1, 23), (64, 64, 3, 64, 29), (40, 72, 1, 1, 31)]:
        x = rng.integers(0, 256, (2, C, H, H + 3), dtype=np.uint8)
        w = rng.integers(-128, 128, (O, C // G, k, k), dtype=np.int8)
        kw = dict(padding=k // 2, groups=G, input_scale=0.02, input_zero_point=7, weight_scale=0.004,
                  weight_zero_point=2, output_scale=float(0.02 * 0.004 * 9000 * np.sqrt(k * k * C // G) / 40),
                  output_zero_point=90, isa="avx2")
        one = qref.conv2d(x, w, None, kernel=kernel, threads=1, **kw)
        many = qref.conv2d(x, w, None, kernel=kernel, threads=threads, **kw)
        oracle.assert_same(many, one, f"kernel={kernel} threads={threads} C={C} O={O} k={k} G={G}")


def test_concurrent_calls_share_the_helper_pool(kernel):
    """Calls from several Python threads at once (the GIL is released) share the
    persistent helper threads and the buffer pool: every result is still exact."""
    import concurrent.futures

    rng = np.random.default_rng(11)
    cases = []
    for i in range(6):
        C, O, G = [(32, 40, 1), (48, 48, 48), (24, 36, 3)][i % 3]
        x = rng.integers(0, 256, (1, C, 19 + i, 17), dtype=np.uint8)
        w = rng.integers(-128, 128, (O, C // G, 3, 3), dtype=np.int8)
        kw = dict(padding=1, groups=G, input_scale=0.02, input_zero_point=5, weight_scale=0.004,
                  weight_zero_point=0, output_scale=float(0.02 * 0.004 * 9000 * np.sqrt(9 * C // G) / 40),
                  output_zero_point=100, isa=ISAS[i % 2])
        cases.append((x, w, kw, qref.conv2d(x, w, None, kernel="scalar", threads=1, **kw)))
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(qref.conv2d, x, w, None, kernel=kernel, threads=3, **kw) for x, w, kw, _ in cases * 3]
        for f, (_, _, kw, want) in zip(futs, cases * 3):
            oracle.assert_same(f.result(), want, f"kernel={kernel} concurrent {kw}")


def test_large_input_blocked_packing(simd_kernel):
    """An input large enough that the GEMM kernels pack A in many row blocks
    (never a full M x K im2col matrix): still the scalar bytes."""
    kernel = simd_kernel
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (1, 24, 70, 66), dtype=np.uint8)
    w = rng.integers(-128, 128, (40, 24, 3, 3), dtype=np.int8)
    kw = dict(padding=1, input_scale=0.02, input_zero_point=3, weight_scale=rng.uniform(0.002, 0.01, 40),
              weight_zero_point=np.zeros(40, np.int32), output_scale=0.9, output_zero_point=128)
    for isa in ISAS:
        want = qref.conv2d(x, w, None, kernel="scalar", isa=isa, **kw)
        oracle.assert_same(qref.conv2d(x, w, None, kernel=kernel, isa=isa, threads=2, **kw), want,
                           f"kernel={kernel} isa={isa}")


# ----------------------------------------------------------------------------- against torch


TORCH_SPECS = [
    oracle.spec(C=32, O=32, H=14, W=13, KH=3, KW=3, padding=1, groups=32, a_zp=17, act="high"),  # depthwise
    oracle.spec(C=48, O=96, H=11, W=12, KH=5, KW=5, padding=2, stride=2, groups=48, w_zp="random"),  # dw x2
    oracle.spec(C=64, O=40, H=9, W=10, KH=1, KW=1, a_zp=120, act="high", weight="extreme"),  # pointwise
    oracle.spec(C=17, O=33, H=12, W=9, KH=3, KW=3, padding=1, stride=2, w_zp="random"),  # im2col
    oracle.spec(C=3, O=24, H=23, W=21, KH=7, KW=7, padding=3, stride=2, a_zp=5),  # conv1-like
    oracle.spec(C=64, O=64, H=8, W=9, KH=3, KW=3, padding=1, groups=8, act="high"),  # groupwise Cg=8
    oracle.spec(C=18, O=18, H=9, W=9, KH=3, KW=3, padding=2, dilation=2, groups=2, relu=True),
]


@pytest.mark.parametrize("s", TORCH_SPECS, ids=[oracle.case_id(s) for s in TORCH_SPECS])
def test_vs_torch_default_isa(kernel, torch_fbgemm, s):
    b = oracle.build(s)
    oracle.assert_same(oracle.qref_conv(s, b, isa="auto", kernel=kernel, threads=2), oracle.torch_conv(s, b),
                       f"kernel={kernel} {oracle.case_id(s)}")


def test_vs_torch_fbgemm_avx2_subprocess(kernel, torch_fbgemm):
    """torch with FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (saturating GEMM kernels) against
    this kernel in the same fresh interpreter (isa="auto" resolves to that there)."""
    res = oracle.run_in_subprocess(TORCH_SPECS, env={"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}, kernel=kernel)
    for s, r in zip(TORCH_SPECS, res):
        oracle.assert_same(r["qref"], r["torch"], f"AVX2 subprocess kernel={kernel} {oracle.case_id(s)}")


def test_prepared_cache_on_conv2d_params(kernel, torch_fbgemm):
    """The torch bridge packs weights once per input shape / quantization / ISA / kernel:
    repeated calls, a new input shape and a new input scale all still equal torch."""
    torch = torch_fbgemm
    torch.backends.quantized.engine = "fbgemm"
    m = torch.ao.nn.quantized.Conv2d(16, 24, 3, stride=1, padding=1)
    g = torch.Generator().manual_seed(0)
    qw = torch._make_per_channel_quantized_tensor(torch.randint(-128, 128, (24, 16, 3, 3), dtype=torch.int8,
                                                                generator=g),
                                                  torch.rand(24, dtype=torch.float64, generator=g) * 0.01 + 0.001,
                                                  torch.zeros(24, dtype=torch.int64), 0)
    m.set_weight_bias(qw, torch.randn(24, generator=g))
    m.scale, m.zero_point = 0.4, 100
    p = qref.from_torch(m, check_engine=False)
    with pytest.raises(ValueError):
        p.weight[0, 0, 0, 0] = 1  # read-only: the cached packing can never go stale
    for (h, w, scale, zp) in [(9, 10, 0.03, 5), (9, 10, 0.03, 5), (5, 7, 0.03, 5), (9, 10, 0.05, 200)]:
        qx = torch._make_per_tensor_quantized_tensor(torch.randint(0, 256, (2, 16, h, w), dtype=torch.uint8,
                                                                   generator=g), scale, zp)
        for qx_ in (qx, qx.contiguous(memory_format=torch.channels_last)):
            oracle.assert_same(p(qx_, kernel=kernel, threads=2).int_repr().numpy(), m(qx_).int_repr().numpy(),
                               f"kernel={kernel} prepared h={h} w={w} scale={scale} zp={zp}")
    assert 1 <= len(p._prepared) <= 16
    import copy
    import pickle

    for clone in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p)):  # the cache is not copied, rebuilt
        assert clone._prepared == {}
        oracle.assert_same(clone(qx, kernel=kernel).int_repr().numpy(), m(qx).int_repr().numpy(),
                           f"kernel={kernel} copied params")
    # numpy input (no fast path) through the same params: same bytes
    qx = torch._make_per_tensor_quantized_tensor(torch.randint(0, 256, (1, 16, 6, 6), dtype=torch.uint8,
                                                               generator=g), 0.02, 9)
    for _ in range(2):  # the second call takes the cached fast path
        got = p(qx.int_repr().numpy(), input_scale=0.02, input_zero_point=9, kernel=kernel)
        oracle.assert_same(got, m(qx).int_repr().numpy(), f"kernel={kernel} prepared, numpy input")
