"""oneDNN's gelu (erf and tanh) and swish post-ops and qlinear on the AVX2 class, against the real
ops: direct calls of ``torch.ops.onednn.qlinear_pointwise`` / ``qconv_pointwise`` with random
operands, and torchao models through torch.compile; on this host and with
``ONEDNN_MAX_CPU_ISA=AVX2`` set before torch is imported in a subprocess."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn as nn  # noqa: E402

from qref.common.onednn_isa import resolve_class  # noqa: E402
from qref.pt2e.ops import Int8Op, run_op  # noqa: E402

POSTS = (("gelu", "none"), ("gelu", "tanh"), ("swish", ""))
DTYPES = (torch.float32, torch.uint8, torch.bfloat16)
X_SCALE, X_ZP = 0.0213, 117


def _int_view(t):
    return t.view({torch.float32: torch.int32, torch.bfloat16: torch.int16}.get(t.dtype, t.dtype))


def mismatches(ref, mine) -> int:
    """Elements whose bits differ (``==`` on the integer view; -0 and +0 differ, as do NaNs)."""
    assert ref.dtype == mine.dtype and ref.shape == mine.shape
    return int((_int_view(ref.contiguous()) != _int_view(mine.contiguous())).sum())


def _out_qparams(dtype):
    return (0.05, 60) if dtype == torch.uint8 else (1.0, 0)


def _weight_scales(O, g):
    # log-uniform per channel: the pre-activations (and the biases, of the channel's size) run
    # from ~1e-6 to a few hundred, so every interval of the gelu / tanh tables, the saturation and
    # exp's underflow are reached.
    return (10 ** (torch.rand(O, generator=g) * 7.5 - 8.0)).float()


def linear_case(post, alg, dtype, bias=True, shape=(64, 48), O=40, seed=0):
    """(torch's output, qref's, the pre-activation) of one random qlinear_pointwise call."""
    g = torch.Generator().manual_seed(seed)
    K = shape[-1]
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    w = torch.randint(-128, 128, (O, K), dtype=torch.int8, generator=g)
    packed = torch.ops.onednn.qlinear_prepack(w, [int(np.prod(shape[:-1])), K])
    ws = _weight_scales(O, g)
    wz = torch.zeros(O, dtype=torch.int32)
    b = torch.randn(O, generator=g) * ws * 800 if bias else None
    os_, oz = _out_qparams(dtype)
    ref = torch.ops.onednn.qlinear_pointwise(x, X_SCALE, X_ZP, packed, ws, wz, b, os_, oz, dtype, post, [], alg)
    pre = torch.ops.onednn.qlinear_pointwise(x, X_SCALE, X_ZP, packed, ws, wz, b, 1.0, 0, torch.float32,
                                             "none", [], "")
    op = Int8Op("qlinear", "qlinear_pointwise", x, X_SCALE, X_ZP, w.numpy(), ws.numpy(),
                None if b is None else b.numpy(), output_scale=os_, output_zp=oz, output_dtype=dtype,
                eltwise=post, algorithm=alg)
    return ref, run_op(op), pre


def conv_case(dtype, bias=True, seed=0, N=2, C=8, O=24, hw=9, post="swish"):
    """(torch's output, qref's) of one random 3x3 qconv_pointwise call (swish post-op by default)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (N, C, hw, hw), dtype=torch.uint8, generator=g)
    w = torch.randint(-128, 128, (O, C, 3, 3), dtype=torch.int8, generator=g)
    ws = _weight_scales(O, g)
    wz = torch.zeros(O, dtype=torch.int32)
    b = torch.randn(O, generator=g) * ws * 800 if bias else None
    os_, oz = _out_qparams(dtype)
    st, pad, dil = [1, 1], [1, 1], [1, 1]
    packed = torch.ops.onednn.qconv_prepack(w, ws, X_SCALE, X_ZP, st, pad, dil, 1, list(x.shape))
    ref = torch.ops.onednn.qconv_pointwise(x, X_SCALE, X_ZP, packed, ws, wz, b, st, pad, dil, 1, os_, oz, dtype,
                                           post, [], "")
    op = Int8Op("qconv", "qconv_pointwise", x, X_SCALE, X_ZP, w.numpy(), ws.numpy(),
                None if b is None else b.numpy(), tuple(st), tuple(pad), tuple(dil), 1, os_, oz, dtype,
                eltwise=post)
    return ref, run_op(op)


def direct_results(seeds=(0,), shapes=((64, 48), (3, 7, 33))):
    """One row per direct op call: the case and its mismatches / elements."""
    rows = []
    for seed in seeds:
        for post, alg in POSTS:
            for dtype in DTYPES:
                for bias in (True, False):
                    for shape in shapes:
                        ref, mine, _ = linear_case(post, alg, dtype, bias, shape, seed=seed)
                        rows.append(dict(op="qlinear", post=post, alg=alg, dtype=str(dtype), bias=bias,
                                         shape=list(shape), mismatches=mismatches(ref, mine),
                                         elements=ref.numel()))
        for post in ("swish", "none", "relu"):
            for dtype in DTYPES:
                ref, mine = conv_case(dtype, seed=seed, post=post)
                rows.append(dict(op="qconv", post=post, alg="", dtype=str(dtype), bias=True,
                                 shape=list(ref.shape), mismatches=mismatches(ref, mine), elements=ref.numel()))
        for post in ("none", "relu"):  # a bfloat16 output runs oneDNN's reference matmul on AVX2
            ref, mine, _ = linear_case(post, "", torch.bfloat16, seed=seed)
            rows.append(dict(op="qlinear", post=post, alg="", dtype=str(torch.bfloat16), bias=True,
                             shape=list(ref.shape), mismatches=mismatches(ref, mine), elements=ref.numel()))
    return rows


# ---- on this host -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("post,alg", POSTS, ids=("gelu_erf", "gelu_tanh", "swish"))
def test_qlinear_post_op_bit_exact(post, alg, dtype):
    for bias in (True, False):
        for shape in ((64, 48), (3, 7, 33)):
            ref, mine, _ = linear_case(post, alg, dtype, bias, shape)
            assert ref.numel() > 0 and mismatches(ref, mine) == 0, (post, alg, dtype, bias, shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_qconv_swish_bit_exact(dtype):
    for bias in (True, False):
        ref, mine = conv_case(dtype, bias)
        assert ref.numel() > 0 and mismatches(ref, mine) == 0, (dtype, bias)


def test_inputs_reach_the_table_intervals():
    """The direct cases' pre-activations cover gelu_erf's 25 intervals (AVX-512 index rule:
    quarter binades of |y| from its index bias, 23 above the saturation bound), tanh's and exp's
    ranges: both signs, zeros of gelu's argument, |y| above 9.01 (tanh saturates) and above 87.3
    (exp underflows in swish)."""
    _, _, pre = linear_case("gelu", "none", torch.float32)
    y = pre.numpy().ravel()
    a = np.abs(y)
    bits = a.view(np.uint32).astype(np.int64)
    idx = np.clip(((bits + 0xC21FFFFF) & 0xFFFFFFFF).astype(np.uint32).view(np.int32) >> 21, 1, 24)
    idx = np.where(a > np.float32(5.5425940), 23, idx)
    assert len(np.unique(idx)) >= 20, np.unique(idx)
    assert (y < 0).sum() > 100 and (y > 0).sum() > 100
    assert (a > 9.02).sum() > 10 and (a > 87.4).sum() > 0 and (a < 2.0 ** -12).sum() > 0


def test_gelu_erf_form_follows_the_kernel_class():
    """The erf approximations of the two classes differ: the AVX2 form on this host's pre-activations
    does not equal torch's output here (AVX-512 kernels), unless this host is itself AVX2."""
    from qref import _core

    if resolve_class("auto") not in ("vnni", "amx", "avx512_core"):
        pytest.skip("needs an AVX-512 oneDNN class")
    ref, _, pre = linear_case("gelu", "none", torch.float32)
    A = pre.numpy().reshape(-1, pre.shape[-1])
    one = np.ones(A.shape[1], np.float32)
    outs = {impl: _core.pt2e_postops(A, one, None, None, 1.0, False, 1.0, 0, "gelu_erf", 0.0, 0.0, "float32",
                                     1.0, 0, impl) for impl in ("avx512", "avx2")}
    r = ref.numpy().reshape(A.shape)
    assert np.array_equal(outs["avx512"].view(np.int32), r.view(np.int32))
    assert (outs["avx2"].view(np.int32) != r.view(np.int32)).sum() > 0


@pytest.mark.parametrize("post,alg", POSTS, ids=("gelu_erf", "gelu_tanh", "swish"))
def test_explain_derives_the_post_op(post, alg):
    """explain_pt2e's float value after the post-ops is torch's float32 output."""
    from qref.pt2e import explain_pt2e

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (4, 16), dtype=torch.uint8, generator=g)
    w = torch.randint(-128, 128, (8, 16), dtype=torch.int8, generator=g)
    ws, b = torch.full((8,), 0.004), torch.randn(8, generator=g)
    packed = torch.ops.onednn.qlinear_prepack(w, [4, 16])
    ref = torch.ops.onednn.qlinear_pointwise(x, X_SCALE, X_ZP, packed, ws, torch.zeros(8, dtype=torch.int32), b,
                                             1.0, 0, torch.float32, post, [], alg)
    op = Int8Op("qlinear", "qlinear_pointwise", x, X_SCALE, X_ZP, w.numpy(), ws.numpy(), b.numpy(),
                output_dtype=torch.float32, eltwise=post, algorithm=alg)
    text = explain_pt2e(op, (2, 5))
    line = [ln for ln in text.splitlines() if "post-ops" in ln]
    assert line and line[0].endswith(f"= {float(ref[2, 5]):.9g}"), text
    assert repr(ref[2, 5].item()) in text


def _float_qlinear(M: int, K: int, N: int, seed: int, x_zp: int = 250):
    """(torch's float32 output, the Int8Op) of one qlinear_pointwise call without post-ops."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (M, K), dtype=torch.uint8, generator=g)
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    ws, b = torch.rand(N, generator=g) * 0.02 + 0.001, torch.randn(N, generator=g)
    packed = torch.ops.onednn.qlinear_prepack(w, [M, K])
    ref = torch.ops.onednn.qlinear_pointwise(x, X_SCALE, x_zp, packed, ws, torch.zeros(N, dtype=torch.int32), b,
                                             1.0, 0, torch.float32, "none", [], "")
    op = Int8Op("qlinear", "qlinear_pointwise", x, X_SCALE, x_zp, w.numpy(), ws.numpy(), b.numpy(),
                output_dtype=torch.float32)
    return ref, op


def test_amx_qlinear_follows_the_logged_matmul_build():
    """On an AMX host oneDNN runs a qlinear on an AMX matmul build (float zero-point compensation, one
    combined scale) or on its AVX512-VNNI build (separate scales), per shape: qref reads the build from
    torch's log and matches both, while the other build's formula rounds apart on float outputs. On any
    other host the amx class's qlinear is n/a: the choice can only be read on the AMX host."""
    from dataclasses import replace

    from qref.pt2e.explain import explain_pt2e
    from qref.pt2e.ops import NotReproduced, chain

    if resolve_class("auto") != "amx":
        ref, op = _float_qlinear(64, 64, 64, 0)
        with pytest.raises(NotReproduced, match="matmul"):
            chain(op, "amx")
        pytest.skip(f"needs an AMX host (this host's oneDNN class is {resolve_class('auto')}); checked the refusal")
    builds = set()
    for i, (M, K, N) in enumerate([(64, 64, 64), (32, 768, 256), (4, 64, 64), (10, 16, 32), (33, 65, 17)]):
        ref, op = _float_qlinear(M, K, N, i)
        got = run_op(op)
        assert op.kernel and op.kernel.startswith("brg_matmul"), op.kernel
        amx = op.kernel.endswith("_amx")
        builds.add(amx)
        assert torch.equal(got.view(torch.int32), ref.view(torch.int32)), (M, K, N, op.kernel)
        # the other build's formula: the op as if the log had named it
        other = run_op(replace(op, kernel="brg_matmul:avx10_1_512" if amx else "brg_matmul:avx10_1_512_amx"))
        assert not torch.equal(other.view(torch.int32), ref.view(torch.int32)), (M, K, N, op.kernel)
        text = explain_pt2e(op, (1, 2))
        assert f"oneDNN ran {op.kernel}" in text and ("compensated in float" in text) == amx, text
    assert builds == {True, False}, "oneDNN ran one matmul build for all of these shapes"


SWEEP = dict(seeds=tuple(range(1, 9)), shapes=((1, 64), (5, 37), (64, 48), (2, 9, 130), (257, 19), (4, 2048)))


@pytest.mark.slow
def test_direct_sweep():
    rows = direct_results(**SWEEP)
    bad = [r for r in rows if r["mismatches"] or not r["elements"]]
    assert rows and not bad, bad


# ---- torchao models through torch.compile -----------------------------------------------------

def _convert(model, x):
    from test_pt2e import _convert as convert

    return convert(model, x)


class MLPTanh(nn.Module):
    """The MLP block of tests/test_pt2e.py with GELU(approximate="tanh")."""

    def __init__(self, d=16, h=32):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, h)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(h, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.ln(x))))


class ConvSiLU(nn.Module):
    """conv + SiLU (fused into qconv_pointwise "swish"), then a 1x1 conv."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.act = nn.SiLU()
        self.c2 = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        return self.c2(self.act(self.c1(x)))


def _models():
    from test_pt2e import MLPBlock

    return {"mlp_gelu_erf": (MLPBlock, (2, 5, 16)), "mlp_gelu_tanh": (MLPTanh, (2, 5, 16)),
            "conv_silu": (ConvSiLU, (2, 3, 10, 10))}


def model_report(name):
    """qref.check(compile=True) of one model as a dict (to_dict), seeded."""
    import warnings

    import qref.pt2e as qp

    cls, shape = _models()[name]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = _convert(cls(), x)
        return qp.check(conv, x, compile=True).to_dict()


def _check_model_rows(rep, post):
    int8 = [r for r in rep["rows"] if r["kind"].startswith(("qconv", "qlinear"))]
    assert int8, rep
    assert all(r["status"] == "OK" and r["mismatches"] == 0 and r["elements"] > 0 for r in int8), rep
    assert any(post in r["detail"] for r in int8), rep  # the fused post-op was in the program


@pytest.mark.parametrize("name,post", [("mlp_gelu_erf", "gelu(none)"), ("mlp_gelu_tanh", "gelu(tanh)"),
                                       ("conv_silu", "swish")])
def test_torchao_models(name, post):
    pytest.importorskip("torchao", reason="torchao (the pt2e extra) is not installed")
    rep = model_report(name)
    _check_model_rows(rep, post)
    if name == "conv_silu":  # no float op outside qref: the whole program is verified
        assert rep["ok"] and rep["rows"][-1]["status"] == "OK", rep


# ---- with ONEDNN_MAX_CPU_ISA=AVX2 (and AVX512_CORE) ------------------------------------------------

_CAP_SCRIPT = """
import json, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {tests!r})
import test_pt2e_postops as t
from qref.common.onednn_isa import resolve_class
out = dict(cls=resolve_class("auto"), direct=t.direct_results(**(t.SWEEP if {sweep!r} else {{}})), models={{}})
if not {sweep!r}:
    try:
        import torchao  # noqa: F401
        out["models"] = {{n: t.model_report(n) for n in t._models()}}
    except ImportError:
        pass
print("RESULT" + json.dumps(out))
"""


def capped_results(cap, sweep=False):
    """direct_results (the sweep's or the default) and, without sweep, the models' reports, run in
    a subprocess with ONEDNN_MAX_CPU_ISA=cap (set before torch is imported)."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap)
    script = _CAP_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)), sweep=sweep)
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=1200)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, res.stderr[-3000:]
    return json.loads(line[0][len("RESULT"):])


@pytest.fixture(scope="module")
def avx2_results():
    return capped_results("AVX2")


def _check_direct(rows):
    assert len(rows) >= len(POSTS) * len(DTYPES) * 4 + 3 * len(DTYPES) + 2
    bad = [r for r in rows if r["mismatches"] or not r["elements"]]
    assert not bad, bad


def test_avx2_direct_ops_in_subprocess(avx2_results):
    """qlinear: gemm:jit (u8 / f32 outputs: int16-pair sums, one combined scale, the AVX2 injector
    with Abramowitz-Stegun erf) and ref_int8 (bf16 outputs: exact sums, two scales, C library erff /
    tanhf / expf); qconv: jit_uni_int8:avx2 (u8 / f32) and ref:any (bf16) with swish, relu, none."""
    assert avx2_results["cls"] == "avx2"
    _check_direct(avx2_results["direct"])


@pytest.mark.parametrize("name,post", [("mlp_gelu_erf", "gelu(none)"), ("mlp_gelu_tanh", "gelu(tanh)"),
                                       ("conv_silu", "swish")])
def test_avx2_torchao_models_in_subprocess(avx2_results, name, post):
    if not avx2_results["models"]:
        pytest.skip("torchao (the pt2e extra) is not installed")
    _check_model_rows(avx2_results["models"][name], post)


@pytest.mark.slow
def test_avx512_core_in_subprocess():
    """AVX-512 without VNNI: brg_matmul:avx512_core (int16-pair sums, separate scales, the AVX-512
    injector's minimax erf) and its convolutions."""
    res = capped_results("AVX512_CORE")
    assert res["cls"] == "avx512_core"
    _check_direct(res["direct"])
    for name, post in (("mlp_gelu_erf", "gelu(none)"), ("mlp_gelu_tanh", "gelu(tanh)"), ("conv_silu", "swish")):
        if res["models"]:
            _check_model_rows(res["models"][name], post)


@pytest.mark.slow
@pytest.mark.parametrize("cap", ["AVX2", "AVX512_CORE"])
def test_capped_direct_sweep_in_subprocess(cap):
    res = capped_results(cap, sweep=True)
    assert res["cls"] == cap.lower()
    _check_direct(res["direct"])
