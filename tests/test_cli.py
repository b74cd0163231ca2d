"""The qref command line, run as a user would: subprocesses of ``python -m qref`` (and the console
script when it is on PATH)."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(*args, ok=True, timeout=300, cwd=None):
    r = subprocess.run([sys.executable, "-m", "qref", *args], capture_output=True, text=True, timeout=timeout,
                       cwd=cwd)
    if ok:
        assert r.returncode == 0, f"qref {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def inproc(capsys, monkeypatch, *args, cwd=None):
    """cli.main in this process (cheap: torch is already imported): (exit code, stdout, stderr)."""
    from qref import cli

    if cwd:
        monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code, msg = cli.main(list(args)), ""
    except SystemExit as e:
        code, msg = (e.code, "") if isinstance(e.code, int) or e.code is None else (1, str(e.code))
    out, err = capsys.readouterr()
    return code, out, err + msg


MODELS = textwrap.dedent('''
    import torch
    import torch.ao.quantization as tq

    def _convert(m, x, engine, qconfig):
        prev = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            m.eval().qconfig = qconfig
            tq.prepare(m, inplace=True)
            m(x)
            tq.convert(m, inplace=True)
        finally:
            torch.backends.quantized.engine = prev
        return m

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = tq.QuantStub()
            self.c1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.c2(self.c1(self.quant(x))))

    def fbgemm_model():
        torch.manual_seed(0)
        return _convert(Net(), torch.rand(1, 3, 32, 32), "fbgemm", tq.get_default_qconfig("fbgemm"))

    def fbgemm_model_with_input():
        torch.manual_seed(0)
        return fbgemm_model(), torch.rand(2, 3, 16, 16)

    class HS(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = tq.QuantStub()
            self.c1 = torch.nn.Conv2d(3, 8, 3)
            self.act = torch.nn.Hardswish()
            self.f = torch.ao.nn.quantized.FloatFunctional()
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            # nearest 3-d upsampling of a quantized tensor: an op qref does not reproduce
            y = self.f.mul_scalar(self.act(self.c1(self.quant(x))), 0.5)
            y = torch.nn.functional.interpolate(y.unsqueeze(2), size=(1, 14, 14), mode="nearest").squeeze(2)
            return self.dequant(y)

    def hardswish_model():
        torch.manual_seed(0)
        return _convert(HS(), torch.rand(1, 3, 16, 16), "fbgemm", tq.get_default_qconfig("fbgemm"))

    def x86_model():
        torch.manual_seed(0)
        return _convert(Net(), torch.rand(1, 3, 32, 32), "x86", tq.get_default_qconfig("x86"))
''')


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    (d / "mymodels.py").write_text(MODELS)
    return d


def test_demo():
    """The README's main job, as a user runs it."""
    r = run("demo", "--size", "96")
    out = r.stdout
    assert "64/64 elements bit-exact" in out
    assert "How the usual hand formulas do on this element" in out
    assert "31 with printed scales" in out  # the post's 31 vs torch's 30
    assert "OK: all 7 quantized op calls bit-exact, and the model's output end to end" in out
    assert "Cross-machine" in out and "advice:" in out
    # the residual network: every op counted and verified, and qref.run equal to torch end to end
    assert "OK: all 13 quantized op calls bit-exact, and the model's output end to end" in out
    assert re.search(r"layer1\.0\.skip +quantized::add_relu", out)
    assert "qref.run(model, x) == model(x) (float output, bit for bit): True" in out
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr


def test_console_script():
    exe = shutil.which("qref")
    if exe is None:
        pytest.skip("qref console script not on PATH (package not pip-installed)")
    r = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "CPU features" in r.stdout and "fbgemm GEMM ISA" in r.stdout and "kernels compiled" in r.stdout


def test_check_subprocess_and_plot(models, tmp_path):
    png = tmp_path / "out.png"
    args = ["check", "mymodels:fbgemm_model", "--input-shape", "1,3,64,64"]
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(png)]
    except ImportError:
        pass
    r = run(*args, cwd=str(models))
    assert "OK: all 4 quantized op calls bit-exact" in r.stdout and "Cross-machine" in r.stdout
    if "--plot" in args:
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_examples_forum():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "forum.py")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "qref == torch on 64/64 elements" in r.stdout
    assert "hand formula, exact scales:   0 of 64" in r.stdout


def test_info(capsys, monkeypatch):
    code, out, _ = inproc(capsys, monkeypatch, "info")
    assert code == 0 and "CPU features" in out and "kernels compiled" in out


def test_explain_default_and_json(capsys, monkeypatch):
    code, out, _ = inproc(capsys, monkeypatch, "explain")
    assert code == 0 and "Output element" in out and "torch says 30" in out
    code, out, _ = inproc(capsys, monkeypatch, "explain", "--index", "0,0,0,0", "--json")
    d = json.loads(out)
    assert code == 0 and d["index"] == [0, 0, 0, 0] and d["value"] == d["torch_value"]


def test_explain_model_layer_index(models, capsys, monkeypatch):
    code, out, _ = inproc(capsys, monkeypatch, "explain", "mymodels:fbgemm_model_with_input", "--layer", "c2",
                          "--index", "1,3,2,2", "--isa", "avx2", cwd=str(models))
    assert code == 0 and "(n=1, c=3, h=2, w=2) of c2" in out and "depthwise" in out
    code, _, err = inproc(capsys, monkeypatch, "explain", "mymodels:fbgemm_model_with_input", "--layer", "nope")
    assert code != 0 and "nope" in err
    code, _, err = inproc(capsys, monkeypatch, "explain", "mymodels:fbgemm_model_with_input", "--index", "0,99,0,0")
    assert code != 0 and "index" in err


def test_check_json_and_file_path(models, capsys, monkeypatch):
    code, out, _ = inproc(capsys, monkeypatch, "check", str(models / "mymodels.py") + ":fbgemm_model_with_input",
                          "--json", "--no-portability")
    d = json.loads(out)
    assert code == 0 and d["check"]["ok"] and len(d["check"]["layers"]) == 4 and d["check"]["end_to_end"]["status"] == "ok"


def test_check_x86_engine_model(models, capsys, monkeypatch):
    import qref

    code, out, _ = inproc(capsys, monkeypatch, "check", "mymodels:x86_model", "--input-shape", "1,3,32,32",
                          cwd=str(models))
    if qref.torch_isa().cpu_features["avx512vnni"]:
        # oneDNN-packed layers: verified with oneDNN's arithmetic, or listed with the reason
        assert "oneDNN" in out
        assert (code == 0) == ("NOT OK" not in out)
        code, out, _ = inproc(capsys, monkeypatch, "explain", "mymodels:x86_model", "--input-shape", "1,3,32,32",
                              "--index", "0,1,3,3")
        assert code == 0 and "oneDNN" in out and "fbgemm's formula" in out
    else:
        assert code == 0


def test_check_unverifiable_layer_exit_code(models, capsys, monkeypatch):
    code, out, _ = inproc(capsys, monkeypatch, "check", "mymodels:hardswish_model", "--input-shape", "1,3,16,16",
                          cwd=str(models))
    assert code == 1 and "upsample_nearest3d: not verified" in out and "aten::upsample_nearest3d" in out
    assert "NOT OK" in out


def test_check_usage_errors(models, capsys, monkeypatch):
    code, _, err = inproc(capsys, monkeypatch, "check", "mymodels", cwd=str(models))
    assert code != 0 and "module:function" in err
    code, _, err = inproc(capsys, monkeypatch, "check", "mymodels:fbgemm_model")
    assert code != 0 and "--input-shape" in err
    code, _, err = inproc(capsys, monkeypatch, "check", "nosuchmodule:f")
    assert code != 0 and "nosuchmodule" in err


def test_bench_delegates(capsys, monkeypatch):
    code, out, _ = inproc(capsys, monkeypatch, "bench", "--help")
    assert code == 0 and "bench" in out


def test_export_and_paths_subcommands(tmp_path):
    """`qref export` writes a golden case that load_case re-verifies; `qref paths` names the headers."""
    import qref

    d = tmp_path / "case"
    r = run("export", str(d), "--isa", "avx2", "--shape", "1,8,6,6", "--out-channels", "4", "--seed", "3")
    assert "wrote" in r.stdout and (d / "case.json").exists()
    case = qref.load_case(str(d))
    assert case.verify().ok
    r = run("paths", "--include")
    assert os.path.exists(os.path.join(r.stdout.strip(), "qref", "requant.h"))
