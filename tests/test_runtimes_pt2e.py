"""qref.runtimes on torchao PT2E models: one column per oneDNN CPU class, each int8 op recomputed from torch's
own recorded inputs. The column of this host is checked against the compiled model's own op outputs; the
AVX2 and AVX512 (no VNNI) columns against torch itself run with ONEDNN_MAX_CPU_ISA capped in a subprocess, on
this process's inputs to each op."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao", reason="torchao (the pt2e extra) is not installed")

import qref  # noqa: E402
from qref.common.onednn_isa import onednn_isa  # noqa: E402
from qref.pt2e.hosts import HOSTS, Pt2eHostsReport, hosts  # noqa: E402
from qref.pt2e.program import compile_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_pt2e import MLPBlock, ResNetBlock, _convert  # noqa: E402


def _bits(t):
    t = t.detach().contiguous()
    return t.view(torch.int32).numpy() if t.dtype == torch.float32 else t.numpy()


def _ndiff(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    return int(np.count_nonzero(_bits(a) != _bits(b)))


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 10)
    conv = _convert(ResNetBlock(), x)
    prog = compile_model(conv, (x,))
    rep = hosts(conv, x, keep_outputs=True, _program=prog)
    return conv, x, prog, rep


def test_runtimes_dispatches_pt2e_models(resnet):
    conv, x, prog, rep = resnet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = qref.runtimes(conv, x)
    assert isinstance(r, Pt2eHostsReport)
    assert [row.differing for row in r.rows] == [row.differing for row in rep.rows]
    assert r.end_to_end.differing == rep.end_to_end.differing
    text = str(r)
    print(text)
    for h in HOSTS:
        assert h.name in text
    assert "run here" in text and "end to end" in text


def test_this_hosts_column_is_the_compiled_models_own_op_outputs(resnet):
    _, x, prog, rep = resnet
    here = rep.here
    if not here or onednn_isa().effective in ("avx2_vnni",):
        pytest.skip(f"this host's oneDNN class {onednn_isa().effective} has no reproduced column")
    assert rep.how(here) == "run here"
    assert all(rep.how(h.name) == "formula" for h in HOSTS if h.name != here)
    assert len(rep.rows) == len(prog.calls) >= 4
    for row, call in zip(rep.rows, prog.calls):
        mine = row.outputs[here]
        assert mine.dtype == call.output.dtype and mine.shape == call.output.shape
        assert np.array_equal(_bits(mine), _bits(call.output)), row.name
        assert row.differing[here] == 0 and row.numel == call.output.numel()
        # every other column's count is exactly where its bytes and this host's differ
        for name, out in row.outputs.items():
            assert row.differing[name] == _ndiff(out, call.output)
    e2e = rep.end_to_end
    assert e2e.differing[here] == 0
    assert np.array_equal(_bits(e2e.outputs[here]), _bits(prog.output))


_CHILD = r"""
import sys, warnings
warnings.filterwarnings("ignore")
import torch
import torchao.quantization.pt2e  # noqa: F401  (the quantized_decomposed ops of the saved program)
from qref.pt2e.hosts import hosts
from qref.pt2e.ops import parse_call
from qref.pt2e.program import compile_model

model_path, ops_path, out_path = sys.argv[1:4]
sent = torch.load(ops_path, weights_only=False)
x = sent["x"]
m = torch.export.load(model_path).module()
prog = compile_model(m, (x,))
assert [c.name for c in prog.calls] == [c[0] for c in sent["calls"]], ([c.name for c in prog.calls], sent["calls"])
outs = []
for call, (name, args, weight) in zip(prog.calls, sent["calls"]):
    # the same integer weights, packed by this process's oneDNN for its class
    assert (parse_call(call.name, call.args).weight == weight).all(), name
    full = [mine if a is None else (a.clone() if isinstance(a, torch.Tensor) else a)
            for a, mine in zip(args, call.args)]
    base, overload = name.split(".")
    with torch.no_grad():
        outs.append(getattr(getattr(torch.ops.onednn, base), overload)(*full).clone())
rep = hosts(m, x, _program=prog)
torch.save({"outs": outs, "e2e": prog.output, "here": rep.here,
            "here_counts": [r.differing.get(rep.here) for r in rep.rows]}, out_path)
"""


@pytest.mark.parametrize("cap, vec, column", [("AVX2", "avx2", "pt2e-avx2"),
                                              ("AVX512_CORE", "avx512", "pt2e-avx512")])
def test_capped_class_column_is_torch_in_a_subprocess(resnet, tmp_path, cap, vec, column):
    """ONEDNN_MAX_CPU_ISA (and inductor's vector ISA, ATEN_CPU_CAPABILITY) set before torch is imported: the
    subprocess's torch runs each int8 op on this process's recorded inputs with its own packed weights. The
    column equals those outputs bitwise, its counts are the real differences, and end to end the column is
    the subprocess's compiled program's output."""
    from qref.pt2e.ops import parse_call

    conv, x, prog, rep = resnet
    order = ["sse41", "avx2", "avx512_core", "vnni", "amx"]
    want = {"AVX2": "avx2", "AVX512_CORE": "avx512_core"}[cap]
    if onednn_isa().host not in order or order.index(onednn_isa().host) < order.index(want):
        pytest.skip(f"this host ({onednn_isa().host}) cannot run oneDNN's {want} class")
    model_path, ops_path, out_path = (str(tmp_path / n) for n in ("m.pt2", "ops.pt", "out.pt"))
    with torch.no_grad():
        torch.export.save(torch.export.export(conv, (x,)), model_path)
    calls = [(c.name, [None if isinstance(a, torch.Tensor) and a.is_mkldnn else a for a in c.args],
              parse_call(c.name, c.args).weight) for c in prog.calls]
    torch.save({"x": x, "calls": calls}, ops_path)
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap, ATEN_CPU_CAPABILITY=vec)
    res = subprocess.run([sys.executable, "-c", _CHILD, model_path, ops_path, out_path], env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    got = torch.load(out_path, weights_only=False)
    assert got["here"] == column and all(n == 0 for n in got["here_counts"]), got
    total = 0
    for row, call, real in zip(rep.rows, prog.calls, got["outs"]):
        if column in row.errors:
            continue
        assert np.array_equal(_bits(row.outputs[column]), _bits(real)), row.name
        n = _ndiff(real, call.output)
        assert row.differing[column] == n, row.name
        total += n
    assert total > 0  # the model is one where the class matters
    e2e = rep.end_to_end
    assert np.array_equal(_bits(e2e.outputs[column]), _bits(got["e2e"]))
    assert e2e.differing[column] == _ndiff(got["e2e"], prog.output) > 0


def test_unreproduced_ops_are_na_with_the_reason():
    """The MLP block: every linear (gelu included) has a count on the classes qref reproduces and is n/a on
    avx2_vnni, whose matmul qref does not reproduce, and on amx except on an AMX host (oneDNN picks its AMX or
    its VNNI matmul build per shape there; qref reads that choice from torch's log on the AMX host only); end
    to end is n/a wherever an op is, and on the classes whose inductor code is vectorized differently. No n/a
    cell carries a count."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    conv = _convert(MLPBlock(), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = qref.runtimes(conv, x)
    text = str(rep)
    print(text)
    here = {"vnni": "pt2e-vnni", "amx": "pt2e-amx", "avx512_core": "pt2e-avx512", "avx2_vnni": "pt2e-avx2-vnni",
            "avx2": "pt2e-avx2", "sse41": "pt2e-avx2"}[onednn_isa().effective]
    assert rep.rows
    for row in rep.rows + [rep.end_to_end]:
        assert not set(row.errors) & set(row.differing), row
        assert set(row.errors) | set(row.differing) == {h.name for h in HOSTS}
    assert any("gelu" in r.detail for r in rep.rows)
    for r in rep.rows:
        assert {"pt2e-vnni", "pt2e-avx512", "pt2e-avx2"} <= set(r.differing), r
        assert "avx2_vnni" in r.errors["pt2e-avx2-vnni"]
        if here == "pt2e-amx":
            assert "pt2e-amx" in r.differing, r
        else:
            assert "matmul" in r.errors["pt2e-amx"], r
        if here != "pt2e-avx2-vnni":
            assert r.differing[here] == 0, r
    assert set(rep.end_to_end.errors) == {h.name for h in HOSTS} - {here}
    assert "n/a" in text and "not reproduced" in text


def test_bad_inputs_name_the_argument(resnet):
    conv, x, _, _ = resnet
    with pytest.raises(ValueError, match="inputs"):
        qref.runtimes(conv)
    with pytest.raises(TypeError, match=r"inputs\[0\]"):
        qref.runtimes(conv, x.numpy())
    with pytest.raises(TypeError, match=r"inputs\[0\]"):
        qref.runtimes(conv, [x])


def test_amx_one_by_one_conv_on_one_image_is_na():
    """oneDNN's AMX brgconv_1x1 on a single image picks its scales by thread count: n/a, not a guess."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 10, 10)
    rep = hosts(_convert(ResNetBlock(), x), x)
    one = [r for r in rep.rows if "w4x8x1x1" in r.detail]
    assert one and all("thread count" in r.errors["pt2e-amx"] for r in one)
    assert all("pt2e-amx" in r.differing for r in rep.rows if r not in one)
    assert "pt2e-amx" in rep.end_to_end.errors
