"""qref.check / qref.portability on whole models (eager and FX), against real torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import importlib  # noqa: E402

import qref  # noqa: E402
from oracle import fx_quantize  # noqa: E402

check_mod = importlib.import_module("qref.check")  # the module (qref.check is the function)
from qref.check import check, portability  # noqa: E402
from qref.demo import demo_model, quantized_engine, quiet_torch_quantization  # noqa: E402


@pytest.fixture(scope="module")
def stem():
    return demo_model(size=64)


def test_check_eager_all_paths_ok(stem):
    net, x = stem
    r = check(net, x)
    assert r.ok, str(r)
    names = [row.name for row in r.layers]
    assert names == ["quant", "conv1", "dw", "pw", "gconv", "conv5", "dequant"]
    paths = {row.name: row.path for row in r.layers}
    assert paths["dw"] == "depthwise" and paths["pw"] == "pointwise" and paths["conv1"] == "im2col"
    assert all(row.mismatches == 0 and row.numel > 0 for row in r.layers)
    assert "OK" in str(r)


def test_check_flags_planted_wrong_element(stem, monkeypatch):
    """Plant one wrong byte in one layer's torch output: exactly that layer, count 1, that index."""
    net, x = stem
    orig = check_mod._models.capture

    def planted(model, inputs, on_call, *args, **kwargs):
        def plant(c):
            if c.name == "pw":
                ir = c.output.int_repr().clone()
                ir[0, 5, 7, 9] = (int(ir[0, 5, 7, 9]) + 3) % 256
                c.output = torch._make_per_tensor_quantized_tensor(ir, c.output.q_scale(), c.output.q_zero_point())
            on_call(c)

        return orig(model, inputs, plant, *args, **kwargs)

    monkeypatch.setattr(check_mod._models, "capture", planted)
    r = check(net, x)
    assert not r.ok
    bad = r.mismatching
    assert [b.name for b in bad] == ["pw"]
    assert bad[0].mismatches == 1
    assert bad[0].first_mismatch == (0, 5, 7, 9)
    assert bad[0].max_abs_diff in (3, 253)
    assert bad[0].diff is not None and int((bad[0].diff != 0).sum()) == 1
    assert "MISMATCH" in str(r) and "pw" in str(r)


def test_check_flags_wrong_params(stem, monkeypatch):
    """A wrong parameter (output zero point off by one) in one layer's qref params is caught."""
    net, x = stem
    from dataclasses import replace

    def wrong(module):
        p = qref.from_torch(module)
        if module is net.conv5:
            p = replace(p, output_zero_point=p.output_zero_point + 1)
        return p

    monkeypatch.setitem(check_mod.VERIFIERS, "quantized.Conv2d", wrong)
    r = check(net, x)
    assert [b.name for b in r.mismatching] == ["conv5"]
    assert r["conv5"].mismatches > 0 and r["conv5"].max_abs_diff == 1


def _fx_checked(cls, x):
    """qref.check on ``cls()`` converted by torch's FX flow (calibrated on ``x``), all under "fbgemm"."""
    with quantized_engine("fbgemm"), quiet_torch_quantization():
        return check(fx_quantize(cls().eval(), x, "fbgemm"), x)


def test_check_fx_model():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.r = torch.nn.ReLU()
            self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.c3 = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.c3(self.c2(self.r(self.c1(x))))

    torch.manual_seed(0)
    x = torch.rand(1, 3, 20, 20)
    r = _fx_checked(M, x)
    assert r.ok, str(r)
    # the FX graph's quantize_per_tensor call is verified like eager mode's Quantize module
    rows = {row.name for row in r.layers if row.type != "aten::dequantize"}
    assert rows == {"quantize_per_tensor", "c1", "c2", "c3"}
    assert [row.status for row in r.layers if row.type == "aten::dequantize"] == ["ok"]
    assert r["quantize_per_tensor"].status == "ok" and r["quantize_per_tensor"].numel == x.numel()


def test_check_fx_functional_ops_are_verified():
    """An FX model calls quantized add_relu as a function (no module, no hook): the dispatcher
    sees it, it gets a row named by its FX node, and qref verifies it."""
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.c2 = torch.nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.c(x)
            return torch.relu(y + self.c2(y))

    torch.manual_seed(0)
    x = torch.rand(1, 4, 8, 8)
    r = _fx_checked(M, x)
    assert r.ok, str(r)
    assert [row.status for row in r.layers if row.name in ("c", "c2")] == ["ok", "ok"]
    funcs = [row for row in r.layers if row.type.startswith("quantized::add")]
    assert len(funcs) == 1 and funcs[0].status == "ok" and funcs[0].numel == 4 * 64, str(r)
    assert r.end_to_end is not None and r.end_to_end.status == "ok"


def test_check_lists_unverifiable_layers():
    """Converted under the default 'x86' engine: on a VNNI host oneDNN runs the conv (verified with
    oneDNN's arithmetic, or listed with the reason where qref lacks that oneDNN kernel); quantized
    Hardswish, a FloatFunctional add and a mul by a scalar are verified; a nearest 3-d upsampling
    (aten::upsample_nearest3d) is quantized arithmetic qref does not model: listed by name and
    reason, never silently skipped, report.ok is False and the end-to-end run names the op."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.act = torch.nn.Hardswish()
            self.skip = torch.ao.nn.quantized.FloatFunctional()
            self.scaled = torch.ao.nn.quantized.FloatFunctional()
            self.fc = torch.nn.Linear(4 * 6 * 6, 5)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            y = self.conv(self.quant(x))
            y = self.scaled.mul_scalar(self.skip.add(y, self.act(y)), 0.5)
            y = torch.nn.functional.interpolate(y.unsqueeze(2), size=(1, 6, 6), mode="nearest").squeeze(2)
            return self.dequant(self.fc(y.flatten(1)))

    torch.manual_seed(1)
    x = torch.rand(2, 3, 8, 8)
    r = _under_x86(M, x, check)
    rows = {row.name: row for row in r.layers}
    # two QFunctionals in one forward: the scalar op has no output qparams to tell which issued it,
    # so its row is named by the op
    assert set(rows) == {"quant", "conv", "act", "skip", "mul_scalar", "upsample_nearest3d", "fc", "dequant"}, str(r)
    assert rows["quant"].status == "ok"
    for name in ("conv", "fc"):  # verified (bit-exact), or listed with a reason
        assert rows[name].status in ("ok", "unsupported"), str(r)
        assert rows[name].status == "ok" or rows[name].reason
    if qref.torch_isa().cpu_features["avx512vnni"] and rows["conv"].status == "ok":
        assert rows["conv"].path == "oneDNN"
    assert rows["act"].status == "ok" and rows["act"].type == "quantized::hardswish"
    assert rows["skip"].status == "ok" and rows["skip"].type == "quantized::add"
    assert rows["mul_scalar"].status == "ok" and rows["mul_scalar"].type == "quantized::mul_scalar"
    up = rows["upsample_nearest3d"]
    assert up.status == "unsupported" and "aten::upsample_nearest3d" in up.reason
    assert not r.ok
    assert r.end_to_end.status == "unsupported" and "aten::upsample_nearest3d" in r.end_to_end.reason
    assert "upsample_nearest3d: not verified" in str(r) and "NOT OK" in str(r)


def _under_x86(cls, x, tool):
    """``tool(model, x)`` on ``cls()`` calibrated on ``x`` and converted, all under torch's "x86" engine."""
    with quantized_engine("x86"), quiet_torch_quantization():
        m = cls().eval()
        m.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        torch.ao.quantization.prepare(m, inplace=True)
        m(x)
        torch.ao.quantization.convert(m, inplace=True)
        return tool(m, x)


def test_portability_x86_engine_routing():
    """A model converted under 'x86' on a VNNI host: the AVX2 host's torch would run fbgemm."""
    if not qref.torch_isa().cpu_features["avx512vnni"]:
        pytest.skip("needs an AVX512-VNNI host (x86 engine routes to oneDNN only there)")

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.conv = torch.nn.Conv2d(16, 16, 1)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.conv(self.quant(x)))

    torch.manual_seed(2)
    x = torch.rand(1, 16, 32, 32)
    p = _under_x86(M, x, portability)
    row = {r.name: r for r in p.rows}["conv"]
    assert row.path_vnni == "oneDNN" and row.path_avx2 == "pointwise"
    assert any("'x86' engine" in a for a in p.advice)


def test_registry_one_line_extension(stem, monkeypatch):
    net, x = stem
    key = check(net, x, end_to_end=False)["conv1"].type
    monkeypatch.delitem(check_mod.VERIFIERS, key)
    r = check(net, x, end_to_end=False)
    assert r["conv1"].status == "unsupported" and not r.ok
    qref.check.register(key, check_mod.via_from_torch)  # the one line
    assert check(net, x).ok
    assert qref.check.VERIFIERS is check_mod.VERIFIERS


def test_check_isa_named_and_portability(stem):
    net, x = stem
    p = portability(net, x)
    rows = {row.name: row for row in p.rows}
    # the stem has full-range activations: GEMM layers saturate on AVX2, not on VNNI
    assert rows["conv1"].differing > 0 and rows["conv1"].saturated >= rows["conv1"].differing
    assert rows["dw"].differing == 0  # depthwise saturates everywhere
    assert not p.portable and p.advice and "reduce_range" in p.advice[0]
    # check(isa=...) agrees with portability: on a VNNI host (auto == vnni for GEMM) the AVX2 view
    # mismatches exactly where portability says bytes differ
    if qref.torch_isa().gemm_isa == "avx512_vnni":
        r = check(net, x, isa="avx2")
        for row in r.layers:  # conv rows: as portability says; ATen's ops are the same on both
            assert row.mismatches == (rows[row.name].differing if row.name in rows else 0), row.name
        assert check(net, x, isa="vnni").ok


def test_portability_reduce_range_is_portable():
    """The advice works: the same stem with reduce_range=True activations, and the forum model,
    give the same bytes on every CPU."""
    from qref.demo import forum_model

    net, x = demo_model(size=64, reduce_range=True)
    p = portability(net, x)
    assert p.portable and not p.advice and all(r.differing == 0 for r in p.rows), str(p)
    assert all(r.saturated == 0 for r in p.rows if r.saturated is not None and r.path_avx2 != "depthwise")
    net, x = forum_model()
    p = portability(net, x)
    assert p.portable and all(r.differing == 0 for r in p.rows), str(p)


def test_check_bad_args(stem):
    net, x = stem
    with pytest.raises(ValueError, match="isa"):
        check(net, x, isa="sse")
    with pytest.raises(TypeError, match="model"):
        check(object(), x)


def test_report_dicts(stem):
    import json

    net, x = stem
    json.dumps(check(net, x).to_dict())
    json.dumps(portability(net, x).to_dict())


def test_plot(tmp_path, stem):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional extra qref[plot])")
    net, x = stem
    r = check(net, x, isa="avx2")
    out = r.plot(str(tmp_path / "check.png"), portability=portability(net, x))
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_numpy_compatible_output(stem):
    net, x = stem
    qx = net.quant(x)
    np.testing.assert_array_equal(qref.from_torch(net.conv1)(qx).int_repr().numpy(),
                                  net.conv1(qx).int_repr().numpy())


AVX2_WORKER = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
import torch  # imported after FBGEMM_ENABLE_INSTRUCTIONS is set
sys.path.insert(0, sys.argv[1])
import oracle
import qref
from qref.demo import demo_model

res = {}
net, x = demo_model(size=64)
r = qref.check(net, x)
res["ok"] = r.ok
res["report"] = str(r)
res["gemm_isa"] = qref.torch_isa().gemm_isa
res["conv1_vs_vnni"] = qref.check(net, x, isa="vnni")["conv1"].mismatches
# explain with isa="auto" here is the AVX2 arithmetic: it must equal torch on saturated elements
s = oracle.spec(C=6, O=8, KH=3, KW=3, padding=1, act="high", weight="extreme", seed=31)  # im2col
b = oracle.build(s)
t = oracle.torch_conv(s, b)
_, ia = oracle.qref_conv(s, b, isa="avx2", intermediates=True)
_, iv = oracle.qref_conv(s, b, isa="vnni", intermediates=True)
sat = np.argwhere(ia.acc != iv.acc)[:60]
p = qref.Conv2dParams(weight=b["w"], weight_scale=np.asarray(b["w_scale"]),
                      weight_zero_point=b["w_zp"].astype(np.int32), per_channel=True, bias=b["bias"],
                      stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1,
                      output_scale=b["out_scale"], output_zero_point=b["out_zp"], relu=False)
bad = 0
differ = 0
for idx in map(tuple, sat):
    e = qref.explain(p, b["x"], idx, input_scale=b["a_scale"], input_zero_point=b["a_zp"])
    bad += e.value != int(t[idx]) or not e.saturated_pairs
    differ += {h.name: h for h in e.hand}["ignoring saturation"].value != int(t[idx])
res["explained"] = len(sat)
res["explain_bad"] = int(bad)
res["saturation_matters"] = int(differ)
print(json.dumps(res))
"""


def test_avx2_torch_subprocess():
    """Under FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (torch's AVX2 GEMM arithmetic, set before torch is
    imported): check(isa="auto") is OK against that torch, check(isa="vnni") flags conv1 with exactly
    portability's count, and explain's saturated derivation equals that torch element by element."""
    import json
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS="AVX2")
    r = subprocess.run([sys.executable, "-c", AVX2_WORKER, here], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["gemm_isa"] == "avx2"
    assert res["ok"], res["report"]
    net, x = demo_model(size=64)
    conv1 = {row.name: row for row in portability(net, x).rows}["conv1"]
    assert res["conv1_vs_vnni"] == conv1.differing > 0
    assert res["explained"] > 0 and res["explain_bad"] == 0
    assert res["saturation_matters"] > 0  # the saturated pairs change torch's output on some elements


def test_check_picks_up_bridge_layer_types():
    """Conv1d, Conv3d and Linear (the layers' torch bridge) are verified through qref.from_torch with no
    change to check; a module called twice gives two rows."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.c1d = torch.nn.Conv1d(6, 8, 3, padding=1)
            self.c3 = torch.nn.Conv3d(2, 4, 3)
            self.fc = torch.nn.Linear(8 * 20, 7)

        def forward(self, x, v):
            return self.fc(self.c1d(self.quant(x)).flatten(1)), self.c3(self.quant(v))

    torch.manual_seed(0)
    x, v = torch.rand(3, 6, 20), torch.rand(1, 2, 5, 5, 5)
    with quantized_engine("fbgemm"), quiet_torch_quantization():
        m = M().eval()
        m.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
        torch.ao.quantization.prepare(m, inplace=True)
        m(x, v)
        torch.ao.quantization.convert(m, inplace=True)
        r = check(m, x, v)
    assert [row.name for row in r.layers] == ["quant", "c1d", "fc", "quant[call 2]", "c3"]
    assert r.ok, str(r)
    assert r["fc"].path and r["c1d"].numel == 3 * 8 * 20


def test_inplace_op_after_layer_is_not_a_false_mismatch():
    """A layer followed by an in-place op: the captured input/output must be copies."""
    torch = pytest.importorskip("torch")
    import torch.ao.nn.quantized as nnq

    import qref

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        conv = nnq.Conv2d(4, 8, 3, padding=1)
        conv.scale, conv.zero_point = 0.05, 128

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = conv
                self.relu = torch.nn.ReLU(inplace=True)

            def forward(self, x):
                return self.relu(self.conv(x))

        qx = torch.quantize_per_tensor(torch.rand(1, 4, 8, 8), 0.02, 3, torch.quint8)
        report = qref.check(Net(), qx)
    finally:
        torch.backends.quantized.engine = prev
    rows = [r for r in report.layers if r.name == "conv"]
    assert rows and rows[0].mismatches == 0 and report.ok, str(report)


def test_check_reports_known_torch_defect():
    """fbgemm's 3D depthwise row sums saturate at 32767 (docs/numerics.md §4.2): with a weight zero point and
    a 7x7x7 kernel torch's bytes are wrong. check must say "torch is wrong here", not a qref mismatch."""
    import torch.ao.nn.quantized as nnq

    import qref

    with quantized_engine("fbgemm"), quiet_torch_quantization():
        m = nnq.Conv3d(8, 8, 7, padding=3, groups=8)
        w = torch._make_per_tensor_quantized_tensor(torch.full((8, 1, 7, 7, 7), 5, dtype=torch.int8), 0.01, 5)
        m.set_weight_bias(w, None)
        m.scale, m.zero_point = 0.05, 100

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.dw = m

            def forward(self, x):
                return self.dw(x)

        qx = torch._make_per_tensor_quantized_tensor(torch.full((1, 8, 7, 7, 7), 255, dtype=torch.uint8), 0.02, 0)
        r = qref.check(Net(), qx)
    row = r["dw"]
    assert row.status == "TORCH_WRONG" and row.mismatches > 0, str(r)
    assert "torch is wrong here" in row.reason and not r.ok
    assert row in r.torch_wrong and row not in r.mismatching
