"""Curated conv cases: every fbgemm path of docs/numerics.md §3 and a random-configuration generator."""

from __future__ import annotations

import numpy as np

from oracle import spec

# Quantization variants cycled over the path cases: per-tensor / per-channel,
# symmetric / affine weights, bias or not, ReLU, activation zero point, and
# activation range (full range saturates int16 pairs; reduce_range is 7-bit).
VARIANTS = [
    dict(per_channel=True, w_zp=0, bias=True, relu=False, a_zp=0, act="full"),
    dict(per_channel=False, w_zp=3, bias=True, relu=True, a_zp=5, act="full"),
    dict(per_channel=True, w_zp="random", bias=False, relu=True, a_zp=128, act="reduce"),
    dict(per_channel=False, w_zp=0, bias=True, relu=False, a_zp=255, act="high"),
]

# (id, expected path on an AVX512 host or None when host-dependent, shape kwargs)
PATH_CASES = [
    # depthwise: G == C, OC in {G, 2G}, G % 8 == 0, k in {3,5,7}, "same" padding, stride 1/2
    ("dw3x3", "depthwise", dict(C=32, O=32, groups=32, H=12, W=12, KH=3, KW=3, padding=1)),
    ("dw3x3-s2", "depthwise", dict(C=16, O=16, groups=16, H=13, W=11, KH=3, KW=3, padding=1, stride=2)),
    ("dw5x5", "depthwise", dict(C=8, O=8, groups=8, H=10, W=10, KH=5, KW=5, padding=2)),
    ("dw5x5-s2", "depthwise", dict(C=24, O=24, groups=24, H=9, W=12, KH=5, KW=5, padding=2, stride=2)),
    ("dw7x7", "depthwise", dict(C=16, O=16, groups=16, H=9, W=9, KH=7, KW=7, padding=3)),
    ("dw7x7-s2", "depthwise", dict(C=8, O=8, groups=8, H=15, W=14, KH=7, KW=7, padding=3, stride=2)),
    ("dw3x3-mult2", "depthwise", dict(C=16, O=32, groups=16, H=10, W=10, KH=3, KW=3, padding=1)),
    ("dw3x3-mult2-s2-n2", "depthwise", dict(N=2, C=8, O=16, groups=8, H=9, W=9, KH=3, KW=3, padding=1, stride=2)),
    # depthwise-looking shapes that fbgemm sends to im2col
    ("dw3x3-c12-im2col", "im2col", dict(C=12, O=12, groups=12, H=8, W=8, KH=3, KW=3, padding=1)),
    ("dw3x3-pad0-im2col", "im2col", dict(C=16, O=16, groups=16, H=8, W=8, KH=3, KW=3, padding=0)),
    ("dw3x3-dil2-im2col", "im2col", dict(C=8, O=8, groups=8, H=10, W=10, KH=3, KW=3, padding=1, dilation=2)),
    # groupwise: Cg == Og in {2,4,8,16}, 3x3, pad 1, stride 1/2, G >= G_together
    ("gw-cg2-g8", "groupwise", dict(C=16, O=16, groups=8, H=9, W=9, KH=3, KW=3, padding=1)),
    ("gw-cg2-g4", None, dict(C=8, O=8, groups=4, H=9, W=9, KH=3, KW=3, padding=1)),  # im2col on AVX512 hosts
    ("gw-cg4-g4-s2", "groupwise", dict(C=16, O=16, groups=4, H=11, W=10, KH=3, KW=3, padding=1, stride=2)),
    ("gw-cg8-g2", "groupwise", dict(C=16, O=16, groups=2, H=8, W=8, KH=3, KW=3, padding=1)),
    ("gw-cg16-g2", "groupwise", dict(C=32, O=32, groups=2, H=7, W=7, KH=3, KW=3, padding=1)),
    ("gw-g1-16to16", "groupwise", dict(C=16, O=16, groups=1, H=8, W=8, KH=3, KW=3, padding=1)),
    ("gw-g1-8to8-s2", "groupwise", dict(C=8, O=8, groups=1, H=9, W=9, KH=3, KW=3, padding=1, stride=2)),
    # pointwise: 1x1, stride 1, no padding, groups allowed
    ("pw", "pointwise", dict(C=24, O=40, H=7, W=9, KH=1, KW=1)),
    ("pw-odd-k", "pointwise", dict(C=7, O=5, H=6, W=6, KH=1, KW=1)),
    ("pw-groups", "pointwise", dict(C=12, O=8, groups=4, H=6, W=5, KH=1, KW=1)),
    # im2col: strided 1x1, dilation, non-square kernels, Cg = 3, tiny H/W, N > 1
    ("im2col-1x1-s2", "im2col", dict(C=16, O=8, H=9, W=9, KH=1, KW=1, stride=2)),
    ("im2col-3x3-s2-c3", "im2col", dict(C=3, O=8, H=17, W=17, KH=3, KW=3, stride=2, padding=1)),
    ("im2col-7x7-s2-c3", "im2col", dict(C=3, O=8, H=20, W=20, KH=7, KW=7, stride=2, padding=3)),
    ("im2col-dil2", "im2col", dict(C=8, O=8, H=11, W=11, KH=3, KW=3, dilation=2, padding=2)),
    ("im2col-1x3", "im2col", dict(C=6, O=4, H=5, W=9, KH=1, KW=3, padding=(0, 1))),
    ("im2col-5x2-s12", "im2col", dict(C=5, O=6, H=12, W=9, KH=5, KW=2, stride=(1, 2), padding=(2, 1))),
    ("im2col-cg3-g2", "im2col", dict(C=6, O=4, groups=2, H=8, W=8, KH=3, KW=3, padding=1)),
    ("im2col-cg6-g2", "im2col", dict(C=12, O=12, groups=2, H=6, W=6, KH=3, KW=3, padding=1)),
    ("im2col-tiny-1x1", "im2col", dict(C=4, O=3, H=1, W=1, KH=3, KW=3, padding=1)),
    ("im2col-tiny-2x3-n3", "im2col", dict(N=3, C=5, O=7, H=2, W=3, KH=2, KW=2)),
    ("im2col-5x5-k-large", "im2col", dict(C=64, O=8, H=6, W=6, KH=5, KW=5, padding=2)),
]


def path_specs():
    out = []
    for i, (cid, path, shape) in enumerate(PATH_CASES):
        for j, var in enumerate(VARIANTS):
            s = spec(seed=1000 * i + j, **shape, **var)
            out.append((f"{cid}-v{j}", path, s))
    return out


def random_spec(rng: np.random.Generator, seed: int) -> dict:
    """A random valid configuration; about half are shaped to hit the fast paths."""
    kind = rng.choice(["depthwise", "groupwise", "pointwise", "general"], p=[0.25, 0.15, 0.15, 0.45])
    N = int(rng.choice([1, 1, 1, 2, 3]))
    if kind == "depthwise":
        G = int(rng.choice([8, 16, 24, 32]))
        k = int(rng.choice([3, 5, 7]))
        st = int(rng.choice([1, 2]))
        mult = int(rng.choice([1, 2]))
        H, W = (int(v) for v in rng.integers(max(2, k - 2), 14, 2))
        shape = dict(C=G, O=G * mult, groups=G, KH=k, KW=k, padding=(k - 1) // 2, stride=st, H=H, W=W)
    elif kind == "groupwise":
        cg = int(rng.choice([2, 4, 8, 16]))
        G = int(rng.choice([1, 2, 4, 8]))
        st = int(rng.choice([1, 2]))
        H, W = (int(v) for v in rng.integers(2, 12, 2))
        shape = dict(C=cg * G, O=cg * G, groups=G, KH=3, KW=3, padding=1, stride=st, H=H, W=W)
    elif kind == "pointwise":
        G = int(rng.choice([1, 1, 2, 3]))
        shape = dict(C=G * int(rng.integers(1, 24)), O=G * int(rng.integers(1, 24)), groups=G, KH=1, KW=1,
                     H=int(rng.integers(1, 10)), W=int(rng.integers(1, 10)))
    else:
        G = int(rng.choice([1, 1, 1, 2, 3]))
        KH, KW = (int(v) for v in rng.integers(1, 6, 2))
        dil = (int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2])))
        pad = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        st = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        H = int(rng.integers(max(1, dil[0] * (KH - 1) + 1 - 2 * pad[0]), 14))
        W = int(rng.integers(max(1, dil[1] * (KW - 1) + 1 - 2 * pad[1]), 14))
        shape = dict(C=G * int(rng.integers(1, 12)), O=G * int(rng.integers(1, 12)), groups=G, KH=KH, KW=KW,
                     dilation=dil, padding=pad, stride=st, H=H, W=W)
    var = dict(
        per_channel=bool(rng.integers(0, 2)),
        w_zp=[0, 0, "random", 7][int(rng.integers(0, 4))],
        bias=bool(rng.integers(0, 4) > 0),
        relu=bool(rng.integers(0, 2)),
        a_zp=int(rng.choice([0, 0, 3, 128, 255, int(rng.integers(0, 256))])),
        act=str(rng.choice(["full", "full", "high", "reduce"])),
        weight=str(rng.choice(["full", "full", "extreme", "small"])),
    )
    return spec(N=N, seed=seed, **shape, **var)


def random_specs(n: int, seed: int = 12345) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [random_spec(rng, seed * 100000 + i) for i in range(n)]
