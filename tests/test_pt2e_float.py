"""inductor's float code between the int8 ops of a compiled PT2E program (layer_norm, mean, ...):
qref's interpreter of the post-grad graph against torch.compile itself, bitwise, through what each
float op feeds (an int8 op's input bytes, the program's output)."""


import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao", reason="torchao (the pt2e extra) is not installed")

import torch.nn as nn  # noqa: E402

import qref  # noqa: E402
import qref.pt2e as qp  # noqa: E402
from qref import _core  # noqa: E402
from qref.pt2e.floatops import Interpreter, vec_lanes  # noqa: E402
from qref.pt2e.program import compile_model  # noqa: E402
from test_pt2e import _convert  # noqa: E402

_INT8 = ("qconv", "qlinear")


def _bits_equal(a, b):
    a, b = a.detach().contiguous(), b.detach().contiguous()
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
    return int((a.view(torch.int32) != b.view(torch.int32)).sum())


def _float_rows(rep):
    return [r for r in rep.rows if not r.kind.startswith(_INT8) and r.name != "end to end"]


class LNLinear(nn.Module):
    """layer_norm feeding a linear (+relu), then a second linear: every op ends up verified."""

    def __init__(self, d, h=8):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, h)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(h, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.ln(x))))


def _randomize(m, seed):
    """A layer_norm affine that is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.ln.weight.copy_(torch.randn(m.ln.weight.shape, generator=g) * 0.5 + 1)
        m.ln.bias.copy_(torch.randn(m.ln.bias.shape, generator=g) * 0.5)
    return m


@pytest.mark.parametrize("d,lead", [(16, (2, 5)), (100, (3, 7)), (768, (2, 3))])
def test_layer_norm_into_linear_bit_exact(d, lead):
    torch.manual_seed(d)
    x = torch.randn(*lead, d) * 2 + 0.5
    conv = _convert(_randomize(LNLinear(d), d), x)
    prog = compile_model(conv, (x,))
    rep = qp.check_compiled(conv, x, _program=prog)
    print(rep)
    names = {r.name: r for r in rep.rows}
    # the layer_norm decomposition inductor generates code for: each a verified row
    for n in ("var_mean", "sub", "add", "rsqrt", "mul", "mul_1", "add_1"):
        assert names[n].status == "OK" and names[n].mismatches == 0, str(rep)
        assert names[n].elements == x.numel(), str(rep)   # the quantized input bytes of fc1
    q = names["quantize_per_tensor"]
    assert q.kind == "quantize_per_tensor (inductor)" and q.status == "OK" and q.elements == x.numel()
    int8 = [r for r in rep.rows if r.kind.startswith(_INT8)]
    assert len(int8) == 2 and all(r.status == "OK" for r in int8), str(rep)
    e2e = rep["end to end"]
    assert e2e.status == "OK" and e2e.mismatches == 0 and e2e.elements == prog.output.numel(), str(rep)
    assert rep.ok
    # the interpreter's bytes into fc1, directly against the recorded call's input
    res = Interpreter(prog, (x,), pairs=qp.api._pairs(prog)).run()
    qnode = next(n for n in prog.graph.nodes if n.name == "quantize_per_tensor")
    assert torch.equal(res.env[qnode].reshape(prog.calls[0].args[0].shape), prog.calls[0].args[0])


def test_run_is_the_interpreter_and_equals_torch_compile():
    torch.manual_seed(3)
    x = torch.randn(4, 6, 100)
    conv = _convert(_randomize(LNLinear(100), 3), x)
    x0 = x.clone()
    mine = qref.run(conv, x, compile=True)
    assert torch.equal(x, x0)  # the compiled code ran on copies
    with torch.no_grad():
        import torch._inductor.config as icfg

        torch._dynamo.reset()
        with icfg.patch(freezing=True):
            ref = torch.compile(conv)(x.clone())
    assert _bits_equal(mine, ref) == 0


class ConvMean(nn.Module):
    """conv + relu, global average pooling (mean over H, W of a channels-last buffer), linear."""

    def __init__(self, c=20):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("shape", [(2, 3, 9, 7), (3, 3, 12, 12)])
def test_conv_global_average_pool_linear_bit_exact(shape):
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape)
    conv = _convert(ConvMean(), x)
    prog = compile_model(conv, (x,))
    rep = qp.check_compiled(conv, x, _program=prog)
    print(rep)
    mean = rep["mean"]
    assert mean.status == "OK" and mean.mismatches == 0 and mean.elements == shape[0] * 20, str(rep)
    assert "fc" in mean.detail or "qlinear" in mean.detail
    assert all(r.status == "OK" for r in rep.rows), str(rep)
    assert rep["end to end"].elements == prog.output.numel() and rep.ok


class LNTanh(nn.Module):
    """tanh between two linears: a float op qref does not reproduce."""

    def __init__(self, d=16):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(self.ln(x))))


def test_unreproduced_float_op_is_not_verified():
    torch.manual_seed(5)
    x = torch.randn(2, 5, 16)
    conv = _convert(LNTanh(), x)
    prog = compile_model(conv, (x,))
    rep = qp.check_compiled(conv, x, _program=prog)
    print(rep)
    tanh = [r for r in rep.rows if "tanh" in r.kind]
    assert tanh and all(r.status == "NOT VERIFIED" for r in tanh), str(rep)
    # what tanh feeds is not computed either; the layer_norm before it still is verified
    assert rep["var_mean"].status == "OK", str(rep)
    assert rep["end to end"].status == "NOT VERIFIED" and not rep.ok
    with pytest.raises(qp.NotReproduced, match="tanh"):
        qref.run(conv, x, compile=True)


def test_welford_layer_norm_into_linear_bit_exact():
    """var_mean over more than 1024 elements: inductor's vectorized Welford reduction."""
    torch.manual_seed(6)
    d = 1030
    x = torch.randn(2, 3, d)
    conv = _convert(_randomize(LNLinear(d), 6), x)
    rep = qp.check(conv, x, compile=True)
    print(rep)
    vm = rep["var_mean"]
    assert vm.status == "OK" and vm.mismatches == 0 and vm.elements == x.numel(), str(rep)
    assert rep["end to end"].status == "OK" and rep.ok, str(rep)


def test_reduction_split_across_threads_is_not_verified():
    """One long row: inductor splits the reduction across its threads (per-thread partial
    results, combined in thread order): refused, not guessed."""
    if torch.get_num_threads() < 2:
        pytest.skip("one thread: inductor does not split")
    d = 512 * torch.get_num_threads() + 8
    m = nn.LayerNorm(d).eval()
    x = torch.randn(1, d)
    prog = compile_model(m, (x,))
    res = Interpreter(prog, (x,)).run()
    assert not res.complete
    assert any("threads" in why for why in res.failed.values()), res.failed


class _Floats(nn.Module):
    """layer_norm of several sizes and row counts, a channels-last mean and a sum, no quantization:
    the interpreter's float code against inductor's own outputs directly."""

    def __init__(self, sizes):
        super().__init__()
        self.lns = nn.ModuleList(nn.LayerNorm(d) for d in sizes)

    def forward(self, *xs):
        outs = [ln(x) for ln, x in zip(self.lns, xs[:-1])]
        img = xs[-1].to(memory_format=torch.channels_last)
        return (*outs, img.mean((2, 3)), xs[0].sum(-1))


# (rows, normalized size): two-step var_mean up to 1024, Welford above it and for a single row
FLOAT_CASES = (((3, 5), 16), ((7,), 64), ((2, 33), 100), ((4,), 768), ((5, 2), 1000), ((9,), 2000), ((1,), 100))


def _float_program():
    g = torch.Generator().manual_seed(7)
    m = _Floats([d for _, d in FLOAT_CASES]).eval()
    with torch.no_grad():
        for ln in m.lns:
            ln.weight.copy_(torch.randn(ln.weight.shape, generator=g))
            ln.bias.copy_(torch.randn(ln.bias.shape, generator=g))
    xs = tuple(torch.randn(*r, d, generator=g) * 3 + 1 for r, d in FLOAT_CASES)
    xs = xs + (torch.randn(2, 24, 7, 9, generator=g),)
    return compile_model(m, xs), xs


def test_float_code_bit_exact_several_sizes():
    prog, xs = _float_program()
    res = Interpreter(prog, xs).run()
    assert res.complete, (res.failed, res.blocked)
    assert len(res.outputs) == len(prog.output)
    total = 0
    for mine, ref in zip(res.outputs, prog.output):
        assert _bits_equal(mine, ref) == 0
        total += ref.numel()
    assert total == sum(int(np.prod(r)) * d for r, d in FLOAT_CASES) + 2 * 24 + 15
    print(f"{total} float32 outputs bit-equal ({vec_lanes()} lanes)")


_AVX2_SCRIPT = """
import sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {tests!r})
import torch
from test_pt2e_float import _float_program, _bits_equal
from qref.pt2e.floatops import Interpreter, vec_lanes
prog, xs = _float_program()
res = Interpreter(prog, xs).run()
assert res.complete, res.failed
bad = sum(_bits_equal(a, b) for a, b in zip(res.outputs, prog.output))
print("LANES", vec_lanes(), "MISMATCHES", bad)
"""


def test_float_code_avx2_lanes_in_subprocess():
    """ATEN_CPU_CAPABILITY=avx2: inductor generates 8-lane code; the sums, the horizontal combine
    and Welford's lane shuffles follow."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    script = _AVX2_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("LANES")]
    assert line, res.stderr[-3000:]
    assert line[0] == "LANES 8 MISMATCHES 0", line[0]
def test_summation_order_is_inductors():
    """The core's horizontal sum: lanes, the masked tail, the pairwise combine (i ^ s)."""
    lanes = vec_lanes()
    rng = np.random.default_rng(0)
    for n in (1, 5, lanes, 3 * lanes + 7, 1000):
        x = (rng.standard_normal((3, n)) * 10 ** rng.uniform(-3, 3, (3, n))).astype(np.float32)
        got = _core.inductor_sum_rows(x, lanes)
        for r in range(3):
            v = np.zeros(lanes, np.float32)
            for k in range(n):
                v[k % lanes] = np.float32(v[k % lanes] + x[r, k])
            s = lanes // 2
            while s >= 1:
                v = np.array([np.float32(v[i] + v[i ^ s]) for i in range(lanes)], np.float32)
                s //= 2
            assert got[r].view(np.int32) == np.float32(np.float32(0) + v[0]).view(np.int32)
    x = rng.standard_normal((2, 9, 5)).astype(np.float32)
    got = _core.inductor_sum_strided(x)
    want = np.zeros((2, 5), np.float32)
    for k in range(9):
        want = (want + x[:, k, :]).astype(np.float32)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    with pytest.raises(ValueError, match="lanes"):
        _core.inductor_sum_rows(x[0], 3)


def test_a_wrong_float_op_is_a_mismatch(monkeypatch):
    """The rows are verified, not assumed: an rsqrt 0.1% off makes what it feeds mismatch. (Through
    a quantize only an error that moves a value across a rounding boundary shows: one ulp rarely
    does. test_float_code_bit_exact_several_sizes compares the float values themselves.)"""
    import qref.pt2e.floatops as fo

    torch.manual_seed(11)
    x = torch.randn(4, 8, 16) * 2
    conv = _convert(_randomize(LNLinear(16), 11), x)
    prog = compile_model(conv, (x,))
    assert qp.check_compiled(conv, x, _program=prog).ok
    fo.handler(next(iter(prog.graph.nodes)))  # fills the table
    monkeypatch.setitem(fo._HANDLERS, torch.ops.aten.rsqrt.default,
                        fo._ew(lambda a: fo._rsqrt(a) * np.float32(1.001)))
    rep = qp.check_compiled(conv, x, _program=prog)
    print(rep)
    assert rep["rsqrt"].status == "MISMATCH" and rep["rsqrt"].mismatches > 0
    assert rep["quantize_per_tensor"].status == "MISMATCH"
    assert rep["end to end"].status == "MISMATCH" and not rep.ok
