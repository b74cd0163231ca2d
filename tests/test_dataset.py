"""qref.check_dataset: qref.check over a whole input set, in process, in worker processes and on Ray.

The planted fault: the second quantized conv's forward, when its input is spatially constant (which
only the planted input, a constant image, produces), calls torch's ``quantized::conv2d`` with a
packed weight whose bias is off in output channel 0, not with the module's own. qref verifies that
op against the module's parameters (``qref.from_torch(module)``), so torch's own op computes
something qref does not reproduce for that input only: qref must name exactly that input and that
layer, and nothing else. (A forward hook that changes a layer's output would not do: check verifies
each op from torch's own inputs to it, and a hook is model code that ``qref.run`` runs too.)
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*reduce_range will be deprecated.*:UserWarning")]

import qref  # noqa: E402

PLANTED = 7
N_INPUTS = 12


class TamperOnConstantInput:
    """The planted fault: a quantized conv's ``forward`` (module level: worker processes and Ray
    actors import it from here). It holds the conv's weight and bias, packs them twice (the
    module's own packing, and one with ``BIAS_OFFSET`` output steps added to channel 0's bias),
    and sends a spatially constant input through the corrupted packing. Packed weights do not
    pickle: it travels as its tensors and packs again on arrival (under the engine the campaign
    set first)."""

    BIAS_OFFSET = 2.0

    def __init__(self, conv):
        self.args = (conv.weight(), conv.bias(), conv.stride, conv.padding, conv.dilation, conv.groups,
                     float(conv.scale), int(conv.zero_point))
        self._pack()

    def _pack(self):
        w, b, stride, padding, dilation, groups, scale, _ = self.args
        bad = b.detach().clone()
        bad[0] += self.BIAS_OFFSET * scale
        self.clean = torch.ops.quantized.conv2d_prepack(w, b, stride, padding, dilation, groups)
        self.corrupt = torch.ops.quantized.conv2d_prepack(w, bad, stride, padding, dilation, groups)

    def __getstate__(self):
        return self.args

    def __setstate__(self, args):
        self.args = args
        self._pack()

    def __call__(self, x):
        r = x.int_repr()
        packed = self.corrupt if bool((r == r[..., :1, :1]).all()) else self.clean
        return torch.ops.quantized.conv2d(x, packed, self.args[6], self.args[7])


def _model(fault=True):
    import torch.ao.quantization as tq

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        torch.manual_seed(0)
        m = torch.nn.Sequential(OrderedDict(quant=tq.QuantStub(), conv1=torch.nn.Conv2d(3, 8, 3),
                                            relu=torch.nn.ReLU(), conv2=torch.nn.Conv2d(8, 8, 3, padding=1),
                                            dequant=tq.DeQuantStub())).eval()
        m.qconfig = tq.get_default_qconfig("fbgemm")
        tq.prepare(m, inplace=True)
        m(torch.rand(4, 3, 8, 8))
        tq.convert(m, inplace=True)
    finally:
        torch.backends.quantized.engine = prev
    if fault:
        m.conv2.forward = TamperOnConstantInput(m.conv2)
    return m


def _inputs():
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(1, 3, 8, 8, generator=g) for _ in range(N_INPUTS)]
    xs[PLANTED] = torch.full((1, 3, 8, 8), 0.6)
    return xs


@pytest.fixture(scope="module")
def model():
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield _model()
    torch.backends.quantized.engine = prev


def _planted_diff():
    """The oracle for the planted fault, from torch: the conv2 output for the planted input under
    the module's own packed weight minus the one its tampered forward returns (int values)."""
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        m = _model()
        x = m.relu(m.conv1(m.quant(_inputs()[PLANTED])))
        own = torch.ops.quantized.conv2d(x, m.conv2._packed_params, m.conv2.scale, m.conv2.zero_point)
        return (own.int_repr().int() - m.conv2(x).int_repr().int()).numpy()
    finally:
        torch.backends.quantized.engine = prev


def _assert_names_planted(r):
    assert not r.ok
    assert r.inputs_checked == N_INPUTS
    assert r.mismatching_inputs == [PLANTED]
    conv2 = r["conv2"]
    d = _planted_diff()
    wrong = np.argwhere(d != 0)
    assert len(wrong) > 0  # the fault changes torch's result for the planted input
    assert (conv2.mismatching_inputs, conv2.elements, conv2.first_input, conv2.first_mismatch) == (
        1, len(wrong), PLANTED, tuple(int(v) for v in wrong[0]))
    assert conv2.max_abs_diff == int(np.abs(d).max()) and conv2.inputs == N_INPUTS
    for name in ("quant", "conv1"):
        assert r[name].status == "ok" and r[name].elements == 0 and r[name].inputs == N_INPUTS
    s = str(r)
    assert f"#{PLANTED}" in s and "conv2" in s and "NOT OK" in s


def test_names_exactly_the_planted_input_and_layer(model):
    xs = _inputs()
    # the oracle: torch in this process, one qref.check per input
    assert [qref.check(model, x).ok for x in xs] == [i != PLANTED for i in range(N_INPUTS)]
    r = qref.check_dataset(model, xs, progress=False)
    _assert_names_planted(r)
    assert qref.check_dataset(_model(fault=False), xs, progress=False).ok


def test_every_input_form_gives_the_same_report(model, tmp_path):
    xs = _inputs()[:PLANTED + 1]
    ref = qref.check_dataset(model, xs, progress=False).to_dict()
    stacked = torch.cat(xs)
    np.savez(tmp_path / "stacked.npz", x=stacked.numpy())
    np.savez(tmp_path / "many.npz", **{f"x{i:02d}": x.numpy() for i, x in enumerate(xs)})
    (tmp_path / "npy").mkdir()
    (tmp_path / "pt").mkdir()
    for i, x in enumerate(xs):
        np.save(tmp_path / "npy" / f"{i:03d}.npy", x.numpy())
        torch.save(x, tmp_path / "pt" / f"{i:03d}.pt")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(stacked), batch_size=1)
    for form in (stacked, stacked.numpy(), iter(xs), [(x,) for x in xs], [x.numpy() for x in xs],
                 str(tmp_path / "stacked.npz"), str(tmp_path / "many.npz"), str(tmp_path / "npy"),
                 tmp_path / "pt", loader, torch.utils.data.TensorDataset(stacked)):
        if isinstance(form, torch.utils.data.TensorDataset):
            form = _BatchOne(stacked)
        assert qref.check_dataset(model, form, progress=False).to_dict() == ref, type(form)


class _BatchOne(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i:i + 1]


def test_same_report_for_any_sharding(model):
    xs = _inputs()
    ref = qref.check_dataset(model, xs, progress=False).to_dict()
    for n in (1, 5, 64):
        assert qref.check_dataset(model, xs, shard_size=n, progress=False).to_dict() == ref


def test_unreadable_file_is_an_error_of_that_input(model, tmp_path):
    for i, x in enumerate(_inputs()[:3]):
        torch.save(x, tmp_path / f"{i}.pt")
    (tmp_path / "1.pt").write_bytes(b"not a tensor")
    r = qref.check_dataset(model, tmp_path, progress=False)
    assert not r.ok and [i for i, _ in r.errors] == [1] and "cannot read" in str(r)
    assert r.inputs_checked == 3 and r["conv2"].inputs == 2


def test_unverified_is_never_ok():
    import torch.ao.quantization as tq

    class Up3dNet(torch.nn.Module):  # aten::upsample_nearest3d: an op qref does not reproduce
        def __init__(self):
            super().__init__()
            self.quant, self.conv, self.dequant = tq.QuantStub(), torch.nn.Conv2d(3, 4, 1), tq.DeQuantStub()
            self.f = torch.ao.nn.quantized.FloatFunctional()

        def forward(self, x):
            y = self.f.mul_scalar(self.conv(self.quant(x)), 0.5)
            y = torch.nn.functional.interpolate(y.unsqueeze(2), size=(1, 4, 4), mode="nearest").squeeze(2)
            return self.dequant(y)

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        m = Up3dNet().eval()
        m.qconfig = tq.get_default_qconfig("fbgemm")
        tq.prepare(m, inplace=True)
        m(torch.rand(1, 3, 4, 4))
        tq.convert(m, inplace=True)
        r = qref.check_dataset(m, [torch.rand(1, 3, 4, 4) for _ in range(3)], progress=False)
    finally:
        torch.backends.quantized.engine = prev
    assert not r.ok and r.mismatching_inputs == [] and r.unsupported
    assert "not verified" in str(r) and "not verifiable" in str(r)
    # a float model calls no quantized layer: nothing verified, not ok
    e = qref.check_dataset(torch.nn.Conv2d(3, 3, 1), [torch.rand(1, 3, 4, 4)], progress=False)
    assert not e.ok and e.empty_inputs == [0] and "no quantized layer" in str(e)


def test_inputs_the_model_rejects(model):
    xs = _inputs()[:3] + [torch.rand(1, 5, 8, 8)]
    r = qref.check_dataset(model, xs, progress=False)
    assert not r.ok and [i for i, _ in r.errors] == [3] and "raised" in str(r)


@pytest.mark.parametrize("inputs,exc,match", [
    (42, TypeError, "inputs has type int"), ("/nonexistent/x.npz", ValueError, "does not exist"),
    ([object()], TypeError, r"input #0 is a object"), ([()], ValueError, "input #0 is an empty"),
])
def test_bad_inputs(model, inputs, exc, match):
    with pytest.raises(exc, match=match):
        qref.check_dataset(model, inputs, progress=False)
    with pytest.raises(ValueError, match="isa='x'"):
        qref.check_dataset(model, [], isa="x")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        qref.check_dataset(lambda x: x, [])


def test_resume(model, tmp_path):
    xs = _inputs()
    path = tmp_path / "ds.jsonl"
    full = qref.check_dataset(model, xs, results=str(path), shard_size=4, progress=False)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["qref_campaign"]["kind"] == "check_dataset"
    path.write_text("\n".join(lines[:2]) + "\n")  # interrupted after the first shard
    assert qref.check_dataset(model, xs, results=str(path), shard_size=4, progress=False).to_dict() == full.to_dict()
    assert len(path.read_text().splitlines()) == 4
    with pytest.raises(ValueError, match="another campaign"):
        qref.check_dataset(_model(fault=False), xs, results=str(path), shard_size=4, progress=False)


def test_local_workers_same_report(model):
    r = qref.check_dataset(model, _inputs(), cluster="local", workers=2, shard_size=3, progress=False)
    _assert_names_planted(r)
    assert r.to_dict() == qref.check_dataset(model, _inputs(), progress=False).to_dict()


BUILDER = """
import sys
sys.path.insert(0, {tests!r})
import test_dataset as T

def build():
    return T._model(fault={fault})
"""


def test_cli_check_inputs(tmp_path):
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    for fault in (True, False):
        (tmp_path / f"m{int(fault)}.py").write_text(BUILDER.format(tests=here, fault=fault))
    np.savez(tmp_path / "x.npz", x=torch.cat(_inputs()).numpy())

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "qref", "check", *args], capture_output=True, text=True,
                              timeout=300)

    p = cli(f"{tmp_path}/m1.py:build", "--inputs", str(tmp_path / "x.npz"), "--json", "--no-progress")
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    assert d["mismatching_inputs"] == [PLANTED] and not d["ok"]
    assert [x["name"] for x in d["layers"] if x["elements"]] == ["conv2"]
    p = cli(f"{tmp_path}/m0.py:build", "--inputs", str(tmp_path / "x.npz"))
    assert p.returncode == 0 and "OK" in p.stdout and f"{N_INPUTS}/{N_INPUTS} inputs" in p.stderr, p.stderr
    for bad, match in (([f"{tmp_path}/m0.py:build", "--inputs", str(tmp_path / "none.npz")], "does not exist"),):
        p = cli(*bad)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and match in p.stderr, (bad, p.stderr)


def test_ray_same_report(model, ray_instance):
    r = qref.check_dataset(model, _inputs(), cluster="ray", shard_size=3, progress=False)
    _assert_names_planted(r)
    assert r.to_dict() == qref.check_dataset(model, _inputs(), progress=False).to_dict()
    assert ray_instance.is_initialized()


def test_progress_on_stderr(model, capsys):
    qref.check_dataset(model, _inputs()[:4])
    err = capsys.readouterr().err
    assert "4/4 inputs" in err and "failures 0" in err


@pytest.mark.skipif(not os.environ.get("QREF_TEST_RAY_ADDRESS"), reason="set QREF_TEST_RAY_ADDRESS=ray://host:port "
                    "to check against a running remote Ray cluster")
def test_remote_ray_cluster(model):
    r = qref.check_dataset(model, _inputs(), cluster=os.environ["QREF_TEST_RAY_ADDRESS"], progress=False)
    assert r.to_dict() == qref.check_dataset(model, _inputs(), progress=False).to_dict()
