"""torchao PT2E models (X86InductorQuantizer) as torch.compile runs them: qref's int8 ops against the
compiled program's own oneDNN calls, and end to end against torch.compile(converted)."""

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao", reason="torchao (the pt2e extra) is not installed")

import torch.nn as nn  # noqa: E402

import qref.pt2e as qp  # noqa: E402


def _convert(model, x):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        m = torch.export.export(model.eval(), (x,)).module()
        q = xiq.X86InductorQuantizer()
        q.set_global(xiq.get_default_x86_inductor_quantization_config())
        p = prepare_pt2e(m, q)
        p(x)
        return convert_pt2e(p)


class ResNetBlock(nn.Module):
    """conv-relu, a residual add+relu, a depthwise conv with hardswish, a hardtanh conv."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.r1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.r2 = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.hs = nn.Hardswish()
        self.c3 = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.r1(self.c1(x))
        y = self.r2(self.c2(y) + y)
        y = self.hs(self.dw(y))
        return self.c3(y)


@pytest.fixture(scope="module")
def resnet_program():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 10)
    conv = _convert(ResNetBlock(), x)
    from qref.pt2e.program import compile_model

    return conv, x, compile_model(conv, (x,))


def test_int8_ops_and_end_to_end_bit_exact(resnet_program):
    conv, x, prog = resnet_program
    rep = qp.check_compiled(conv, x, _program=prog)
    print(rep)
    int8 = [r for r in rep.rows if r.kind.startswith(("qconv", "qlinear"))]
    assert len(int8) >= 4
    assert all(r.status == "OK" and r.mismatches == 0 and r.elements > 0 for r in int8), str(rep)
    q = [r for r in rep.rows if r.kind.startswith("quantize_per_tensor")]
    assert q and all(r.mismatches == 0 for r in q)
    e2e = rep["end to end"]
    assert e2e.status == "OK" and e2e.mismatches == 0 and e2e.elements == prog.output.numel()
    assert rep.ok


def test_run_equals_torch_compile(resnet_program):
    conv, x, prog = resnet_program
    from qref.pt2e.api import _qref_compute
    from qref.pt2e.program import run_with

    mine = run_with(prog, (x,), _qref_compute("auto"))
    assert mine.dtype == prog.output.dtype
    assert torch.equal(mine.view(torch.int32), prog.output.view(torch.int32))


def test_converted_graph_quantize_dequantize(resnet_program):
    conv, x, _ = resnet_program
    rep = qp.check(conv, x)
    qd = [r for r in rep.rows if r.kind in ("quantize_per_tensor", "dequantize_per_tensor")]
    assert qd and all(r.status == "OK" for r in qd), str(rep)
    assert any(r.status == "FP32 SIMULATION" for r in rep.rows)


def test_unreproduced_post_op_is_not_verified():
    """leaky_relu is not reproduced: reported NOT VERIFIED, and run refuses it."""
    import numpy as np

    from qref.pt2e.ops import Int8Op, NotReproduced, run_op

    op = Int8Op("qlinear", "qlinear_pointwise.tensor", torch.zeros(2, 4, dtype=torch.uint8), 0.1, 0,
                np.zeros((3, 4), np.int8), np.ones(3, np.float32), None, output_dtype=torch.float32,
                eltwise="leaky_relu", scalars=(0.01,))
    with pytest.raises(NotReproduced, match="leaky_relu"):
        run_op(op)


_AVX2_SCRIPT = """
import json, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {tests!r})
import torch
from test_pt2e import MLPBlock, ResNetBlock, _convert
import qref.pt2e as qp
torch.manual_seed(0)
x = torch.randn(2, 3, 10, 10)
conv = _convert(ResNetBlock(), x)
rep = qp.check(conv, x, compile=True)
print("REPORT" + json.dumps(rep.to_dict()))
torch.manual_seed(0)
xm = torch.randn(2, 5, 16)
rep = qp.check(_convert(MLPBlock(), xm), xm, compile=True)
print("MLP" + json.dumps(rep.to_dict()))
"""


def test_avx2_host_in_subprocess():
    """oneDNN's AVX2 int8 kernels (ONEDNN_MAX_CPU_ISA=AVX2 set before torch is imported): qref's
    isa="auto" follows the variable, and every int8 op and the output match."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    script = _AVX2_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("REPORT")]
    assert line, res.stderr[-3000:]
    rep = json.loads(line[0][len("REPORT"):])
    int8 = [r for r in rep["rows"] if r["kind"].startswith(("qconv", "qlinear"))]
    assert len(int8) >= 4 and all(r["status"] == "OK" and r["mismatches"] == 0 for r in int8), rep
    assert rep["rows"][-1]["name"] == "end to end" and rep["rows"][-1]["status"] == "OK", rep
    assert rep["ok"]
    # the MLP block: gelu (Abramowitz-Stegun erf on this class), oneDNN's gemm:jit qlinear, layer_norm
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("MLP")]
    assert line, res.stderr[-3000:]
    mlp = json.loads(line[0][len("MLP"):])
    assert all(r["status"] == "OK" and r["mismatches"] == 0 for r in mlp["rows"]), mlp
    assert mlp["rows"][-1]["name"] == "end to end" and mlp["ok"]


class MLPBlock(nn.Module):
    """A transformer-style MLP block on (batch, tokens, features): layer_norm, linear, gelu, linear,
    residual add."""

    def __init__(self, d=16, h=32):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, h)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(h, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.ln(x))))


def test_mlp_block_every_op_and_end_to_end():
    """qlinear on 3-D inputs with oneDNN's gelu and a residual sum, and inductor's layer_norm: every
    row verified with 0 mismatches and the output equal to torch.compile's."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    conv = _convert(MLPBlock(), x)
    rep = qp.check(conv, x, compile=True)
    lin = [r for r in rep.rows if r.kind.startswith("qlinear")]
    assert len(lin) == 2, str(rep)
    assert any(r.name.startswith("var_mean") for r in rep.rows), str(rep)
    for r in rep.rows:
        assert r.status == "OK" and r.mismatches == 0 and r.elements > 0, str(rep)
    assert rep.rows[-1].name == "end to end" and rep.ok


def test_explain_gives_both_derivations(resnet_program):
    from qref.pt2e.ops import parse_call, run_op

    _, _, prog = resnet_program
    call = prog.calls[0]
    op = parse_call(call.name, call.args)
    text = qp.explain_pt2e(op, (0, 1, 2, 3))
    assert "uncompiled" in text and "compiled" in text and "exact int32" in text
    assert repr(run_op(op)[0, 1, 2, 3].item()) in text


def test_cli_checks_saved_exported_program(resnet_program, tmp_path):
    import os
    import subprocess
    import sys

    conv, x, _ = resnet_program
    path = str(tmp_path / "model.pt2")
    with torch.no_grad():
        torch.export.save(torch.export.export(conv, (x,)), path)
    res = subprocess.run([sys.executable, "-m", "qref", "check", path, "--input-shape", "2,3,10,10"],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "end to end" in res.stdout and "NOT OK" not in res.stdout
