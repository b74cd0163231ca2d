"""qref.fuzz: a custom kernel against qref on random configurations, in process, in worker
processes and on Ray.

Planted bugs must be found, shrunk to a minimal configuration and diagnosed by name; a correct
kernel (qref.conv2d itself) passes; the report is the same for every cluster and shard size.
The kernels live at module level so worker processes and Ray actors import them from here.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import qref
from qref import variants as V
from qref.campaign import fuzzer as F

# ----------------------------------------------------------------------------- kernels under test


def correct(x, w, b, **kw):
    return qref.conv2d(x, w, b, **kw)


def correct_onednn(x, w, b, **kw):
    return qref.conv2d(x, w, b, **kw, engine="onednn")


def _model(x, w, b, kw, **changes):
    return V.model(V.make_case("kernel", x, w, b, **kw), **changes)["out"]


def no_saturation(x, w, b, **kw):
    """Plain int32 products where fbgemm sums int16-saturating pairs."""
    return _model(x, w, b, kw, products="exact")


def integer_bias(x, w, b, **kw):
    """The float bias rounded to an int32 accumulator term instead of added in float."""
    return _model(x, w, b, kw, bias="int32")


def unfused_bias(x, w, b, **kw):
    """The bias multiplied by the float32 reciprocal of S and rounded before the add (fbgemm
    divides per-channel and fuses multiply and add per-tensor)."""
    return _model(x, w, b, kw, bias="reciprocal")


def round_half_away(x, w, b, **kw):
    """fbgemm's pre-rounding value, then rounded half away from zero (std::round), written
    independently of qref.variants: only qref.conv2d's intermediates are used."""
    _, inter = qref.conv2d(x, w, b, **kw, return_intermediates=True)
    y = inter.y.astype(np.float64)
    r = np.sign(y) * np.floor(np.abs(y) + 0.5)
    r = np.where((y >= -2.0**31) & (y < 2.0**31), r, -2.0**31)  # cvtps2dq's INT32_MIN
    zp = kw["output_zero_point"]
    return np.clip(np.clip(r, -32768, 32767) + zp, zp if kw["relu"] else 0, 255).astype(np.uint8)


def torch_kernel(x, w, b, engine="fbgemm", **kw):
    """torch's own quantized conv2d as the kernel under test: the campaign then checks qref
    against the real runtime on every drawn configuration."""
    import torch

    torch.backends.quantized.engine = engine
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), kw["input_scale"], kw["input_zero_point"])
    ws, wz = kw["weight_scale"], kw["weight_zero_point"]
    if isinstance(ws, np.ndarray):
        qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.from_numpy(ws),
                                                      torch.from_numpy(np.asarray(wz, np.int64)), 0)
    else:
        qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), float(ws), int(wz))
    packed = torch.ops.quantized.conv2d_prepack(qw, None if b is None else torch.from_numpy(b), list(kw["stride"]),
                                                list(kw["padding"]), list(kw["dilation"]), kw["groups"])
    op = torch.ops.quantized.conv2d_relu if kw["relu"] else torch.ops.quantized.conv2d
    return op(qx, packed, kw["output_scale"], kw["output_zero_point"]).int_repr().numpy()


def returns_int32(x, w, b, **kw):
    return qref.conv2d(x, w, b, **kw).astype(np.int32)


BUGS = [(no_saturation, "exact_products"), (unfused_bias, "bias_reciprocal"), (integer_bias, "bias_int32"),
        (round_half_away, "round_half_away")]
N_BUG = 48  # configurations per planted-bug campaign: each bug shows in several of them


def _assert_minimal(kernel, f, isa="auto", engine="fbgemm"):
    """The shrunk configuration still fails, and no single shrinking step of it does."""
    assert F.evaluate(kernel, f.config, isa, engine).failed
    for k in F.SHAPE_KEYS:
        assert f.config[k] <= f.original_config[k], (k, f.config, f.original_config)
    for cand in F._shrink_candidates(f.config):
        o = F.evaluate(kernel, F.materialize(cand), isa, engine)
        assert o.invalid or not o.failed, (f.config, cand)


# ----------------------------------------------------------------------------- in process


def test_correct_kernel_passes_every_path():
    r = qref.fuzz(correct, 120, seed=0, progress=False)
    assert r.ok and r.configs_run == 120 and not r.failures, str(r)
    assert set(r.coverage) == {"pointwise", "im2col", "depthwise", "groupwise"}, r.coverage
    assert "OK" in str(r)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_itself_passes():
    """The real runtime as the kernel: torch's fbgemm conv2d equals qref on every drawn path."""
    pytest.importorskip("torch")
    prev = __import__("torch").backends.quantized.engine
    try:
        r = qref.fuzz(torch_kernel, 100, seed=3, progress=False)
    finally:
        __import__("torch").backends.quantized.engine = prev
    assert r.ok and set(r.coverage) == {"pointwise", "im2col", "depthwise", "groupwise"}, str(r)


@pytest.mark.parametrize("kernel,variant", BUGS, ids=[v for _, v in BUGS])
def test_planted_bug_found_shrunk_diagnosed(kernel, variant):
    r = qref.fuzz(kernel, N_BUG, seed=0, progress=False)
    assert not r.ok and r.failures, str(r)
    assert variant in r.variants, (r.variants, str(r))
    for f in r.failures:
        # named, or among the arithmetics that reproduce the kernel equally on this data
        assert variant in f.explained_by and variant in f.diagnosis, str(f)
        assert f.mismatches > 0 and f.error is None
        for k in F.SHAPE_KEYS + ("stride", "padding", "dilation", "groups", "input_scale", "input_zero_point",
                                 "weight_scale", "weight_zero_point", "output_scale", "output_zero_point", "relu"):
            assert k in f.config
    # shrinking made every failure's shape at most as large, most strictly smaller, and minimal
    assert any(sum(f.config[k] for k in F.SHAPE_KEYS) < sum(f.original_config[k] for k in F.SHAPE_KEYS)
               for f in r.failures)
    _assert_minimal(kernel, r.failures[0])
    # the reported minimal configuration reproduces the failure from its dict alone
    x, w, b, kw = r.failures[0].operands()
    assert not np.array_equal(kernel(x, w, b, **kw), qref.conv2d(x, w, b, **kw))
    s = str(r)
    assert "FAILED" in s and variant in s and "shrunk from" in s


def test_saturation_bug_shows_where_fbgemm_saturates():
    """On a VNNI host only depthwise saturates (isa='auto'); isa='avx2' saturates every path, so the
    same kernel fails on more configurations there, and the diagnosis is the same."""
    r = qref.fuzz(no_saturation, N_BUG, seed=0, progress=False)
    a2 = qref.fuzz(no_saturation, N_BUG, seed=0, isa="avx2", progress=False)
    paths = {F.path_label(f.original_config, "auto", "fbgemm") for f in r.failures}
    if qref.torch_isa().gemm_isa == "avx512_vnni":
        assert paths == {"depthwise"}, paths
        assert len(a2.failures) > len(r.failures)
    assert set(a2.variants) == {"exact_products"}


def test_same_report_for_any_shard_size_and_subset():
    a = qref.fuzz(round_half_away, 40, seed=7, progress=False)
    b = qref.fuzz(round_half_away, 40, seed=7, shard_size=3, progress=False)
    assert a.to_dict() == b.to_dict()
    c = qref.fuzz(round_half_away, 20, seed=7, progress=False)  # configuration i depends on (seed, i) only
    assert [f.to_dict() for f in c.failures] == [f.to_dict() for f in a.failures if f.index < 20]
    d = qref.fuzz(round_half_away, 40, seed=8, progress=False)
    assert [f.original_config for f in d.failures] != [f.original_config for f in a.failures]


def test_engines():
    assert qref.fuzz(correct_onednn, 40, seed=1, engine="onednn", progress=False).ok
    r = qref.fuzz(correct, 40, seed=1, engine="onednn", progress=False)  # fbgemm's arithmetic: wrong for oneDNN
    assert r.failures and set(r.variants) == {"fbgemm_arithmetic"}, str(r)
    assert set(r.coverage) == {f"onednn/{p}" for p in ("pointwise", "im2col", "depthwise", "groupwise")}


def test_kernel_errors_are_failures():
    r = qref.fuzz(returns_int32, 5, seed=0, progress=False)
    assert len(r.failures) == 5 and all("dtype int32" in f.diagnosis for f in r.failures)
    assert all(f.config["N"] == 1 and f.config["H"] == 1 for f in r.failures)  # shrunk all the way


def test_progress_on_stderr(capsys):
    qref.fuzz(correct, 10, seed=0)
    err = capsys.readouterr().err
    assert "10/10" in err and "failures 0" in err


def test_resume_from_results_file(tmp_path):
    path = tmp_path / "fuzz.jsonl"
    full = qref.fuzz(round_half_away, 48, seed=2, shard_size=8, results=str(path), progress=False)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 6 and json.loads(lines[0])["qref_campaign"]["kind"] == "fuzz"
    # an interruption: three shards finished, the fourth cut short while being written
    path.write_text("\n".join(lines[:4] + [lines[4][:30]]) + "\n")
    calls = []

    def counting(x, w, b, **kw):
        calls.append(1)
        return round_half_away(x, w, b, **kw)

    counting.__qualname__ = round_half_away.__qualname__  # the same campaign

    def run(file_lines):
        path.write_text("\n".join(file_lines) + "\n")
        calls.clear()
        rep = qref.fuzz(counting, 48, seed=2, shard_size=8, results=str(path), progress=False)
        assert rep.to_dict() == full.to_dict()
        assert len(path.read_text().splitlines()) == 7
        return len(calls)

    resumed = run(lines[:4] + [lines[4][:30]])  # shards 0-2 done, shard 3 cut short while written
    other_half = run([lines[0]] + lines[4:])  # shards 3-5 done
    everything = run(lines[:1])  # nothing done
    assert resumed and other_half and resumed + other_half == everything  # only missing shards ran
    with pytest.raises(ValueError, match="another campaign"):
        qref.fuzz(correct, 48, seed=2, shard_size=8, results=str(path), progress=False)


@pytest.mark.parametrize("kw,match", [
    (dict(n=-1), "n=-1"), (dict(seed=-3), "seed=-3"), (dict(engine="qnnpack"), "engine='qnnpack'"),
    (dict(isa="amx"), "isa='amx'"), (dict(cluster="slurm"), "cluster='slurm'"), (dict(workers=0), "workers=0"),
    (dict(shard_size=0), "shard_size=0"),
])
def test_bad_arguments(kw, match):
    args = dict(n=4)
    args.update(kw)
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        qref.fuzz(correct, n, **args)
    with pytest.raises(TypeError, match="not callable"):
        qref.fuzz(42, 3)


def test_auto_isa_must_mean_the_same_on_every_worker():
    """isa='auto' is the driver's host: a worker whose CPU resolves it differently refuses to run."""
    state = dict(kernel=correct, isa="auto", engine="fbgemm", shrink=True, host="IsaSemantics(name='auto(avx2)')")
    with pytest.raises(RuntimeError, match="isa='avx2' or 'vnni'"):
        F.run_shard(state, (0, 0, 2))
    state["host"] = F.host_semantics()
    assert F.run_shard(state, (0, 0, 2))[0]["configs"] == 2
    assert F.run_shard(dict(state, isa="vnni", host="other"), (0, 0, 2))[0]["configs"] == 2  # named: no check


def test_import_qref_does_not_import_ray():
    import subprocess

    code = "import sys, qref; qref.fuzz; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    # and fuzzing in process needs numpy only
    code = ("import sys; sys.modules['torch'] = None; import qref; "
            "r = qref.fuzz(lambda x, w, b, **kw: qref.conv2d(x, w, b, **kw), 8, progress=False); "
            "print(r.ok, r.configs_run, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "8", "False"]


def _qref_cli(*args):
    import subprocess

    return subprocess.run([sys.executable, "-m", "qref", *args], capture_output=True, text=True, timeout=300)


def test_cli_fuzz():
    here = os.path.abspath(__file__)
    p = _qref_cli("fuzz", f"{here}:round_half_away", "--n", "16", "--seed", "0", "--json", "--no-progress")
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout) == qref.fuzz(round_half_away, 16, seed=0, progress=False).to_dict()
    p = _qref_cli("fuzz", f"{here}:correct", "--n", "8")
    assert p.returncode == 0 and "OK" in p.stdout and "8/8" in p.stderr, p.stderr
    for bad, match in ((["nosuchmodule:k", "--n", "2"], "cannot import 'nosuchmodule'"),
                       ([f"{here}:nosuch", "--n", "2"], "has no function 'nosuch'"),
                       ([f"{here}:correct", "--n", "-2"], "n=-2 is not valid"),
                       ([f"{here}:correct", "--n", "2", "--cluster", "slurm"], "--cluster='slurm'"),
                       ([f"{here}:correct", "--n", "2", "--engine", "tvm"], "engine='tvm'"),
                       ([f"{here}:correct"], "required: --n"), ([f"{here}:correct", "--n", "x"], "invalid int")):
        p = _qref_cli("fuzz", *bad)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and match in p.stderr, (bad, p.stderr)


# ----------------------------------------------------------------------------- worker processes, Ray


def test_local_workers_same_report():
    a = qref.fuzz(round_half_away, 32, seed=4, progress=False)
    b = qref.fuzz(round_half_away, 32, seed=4, cluster="local", workers=2, progress=False)
    assert a.failures and a.to_dict() == b.to_dict()


def test_ray_finds_shrinks_diagnoses_every_planted_bug(ray_instance):
    """One Ray campaign per planted bug and one for the correct kernel; each report equals the
    in-process one, and the instance this process started stays up (qref did not start it)."""
    for kernel, variant in BUGS:
        r = qref.fuzz(kernel, N_BUG, seed=0, cluster="ray", progress=False)
        assert variant in r.variants and all(variant in f.explained_by for f in r.failures), str(r)
        assert r.to_dict() == qref.fuzz(kernel, N_BUG, seed=0, progress=False).to_dict()
        assert ray_instance.is_initialized()
    ok = qref.fuzz(correct, 64, seed=0, cluster="ray", progress=False)
    assert ok.ok, str(ok)


@pytest.mark.slow
def test_ray_starts_and_stops_its_own_instance():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already up in this process")
    r = qref.fuzz(round_half_away, 24, seed=5, cluster="ray", progress=False)
    assert not ray.is_initialized()
    assert r.to_dict() == qref.fuzz(round_half_away, 24, seed=5, progress=False).to_dict()


@pytest.mark.slow
def test_long_campaign_torch_is_the_kernel():
    """torch's fbgemm conv2d against qref on many configurations, in worker processes (a torch
    crash fails this test instead of ending the run). Not the x86 engine: torch/oneDNN itself is
    wrong or crashes on some drawn shapes there (grouped convs with one input channel per group
    and outputs that read padding; a grouped 3x3 stride-2 conv of a 1x1 input: SIGSEGV), which
    qref.check reports as TORCH_WRONG and a campaign against torch would count as failures."""
    pytest.importorskip("torch")
    n = int(os.environ.get("QREF_FUZZ_CAMPAIGN", "3000"))
    r = qref.fuzz(torch_kernel, n, seed=12, cluster="local", progress=False)
    assert r.ok, str(r)


@pytest.mark.slow
def test_long_campaign_correct_kernel_every_isa():
    n = int(os.environ.get("QREF_FUZZ_CAMPAIGN", "3000"))
    for isa in ("auto", "avx2", "vnni"):
        r = qref.fuzz(lambda x, w, b, _isa=isa, **kw: qref.conv2d(x, w, b, **kw, isa=_isa), n, seed=11, isa=isa,
                      cluster="local", progress=False)
        assert r.ok, str(r)
