"""Argument validation of every public function: regressions, and a hypothesis fuzz.

1. Regressions (each was a crash, a silent cast, a wrong answer or an unclear error): a bad
   argument gives a TypeError / ValueError naming the function, the argument and the rule.
2. The fuzz: a valid call of each public function (conv1d, conv3d, the transposed convs, linear,
   quantize, explain, compare, export / load_case, conv_plan / conv_nd_plan, conv2d) with one or
   two arguments replaced by hostile values (wrong types, NaN, infinities, huge and negative
   ints, strings, tuples of the wrong length, arrays of every dtype and rank, empty arrays)
   must return or raise TypeError / ValueError / NotImplementedError (qref's "not supported"
   errors) -- never another exception, a hang or a crash. It runs in a subprocess (a crash fails
   the test instead of killing pytest), with a fast profile by default and a long one with
   --runslow.

Run as a script (``python test_validation_fuzz.py N SEED``) it is the fuzz worker.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import qref  # noqa: E402

Q = dict(input_scale=0.1, input_zero_point=3, weight_scale=0.1, weight_zero_point=0, output_scale=0.1,
         output_zero_point=3)


def _params():
    rng = np.random.default_rng(0)
    return qref.Conv2dParams(weight=rng.integers(-128, 128, (4, 3, 3, 3), dtype=np.int8),
                             weight_scale=np.array([0.01]), weight_zero_point=np.array([0], np.int32),
                             per_channel=False, bias=rng.normal(0, 1, 4).astype(np.float32), stride=(1, 1),
                             padding=(1, 1), dilation=(1, 1), groups=1, output_scale=0.2, output_zero_point=10,
                             relu=False)


X = np.random.default_rng(1).integers(0, 256, (1, 3, 6, 6), dtype=np.uint8)


# ----------------------------------------------------------------------------- regressions


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(input_scale=-1.0, input_zero_point=3), ValueError, r"explain: input_scale=-1\.0 is not a valid scale"),
    (dict(input_scale=float("nan"), input_zero_point=3), ValueError, r"explain: input_scale=nan is not a valid"),
    (dict(input_scale=0.1, input_zero_point=300), ValueError, r"explain: input_zero_point=300 is out of range"),
    (dict(input_scale=0.1, input_zero_point=2.7), TypeError, r"explain: input_zero_point=2\.7 has type float"),
    (dict(input_scale=0.1), ValueError, r"explain: input_scale=0\.1, input_zero_point=None"),
])
def test_explain_checks_input_quantization(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        qref.explain(_params(), X, (0, 0, 1, 1), **kw)


@pytest.mark.parametrize("index, exc, msg", [
    ((0, 0, 1.7, 0), TypeError, r"explain: index\[2\]=1\.7 has type float"),
    ((0, 0, "a", 0), TypeError, r"explain: index\[2\]='a' has type str"),
    ("0,0,a,0", ValueError, r"explain: index='0,0,a,0' \(a string index must be comma-separated ints"),
    (1.0, TypeError, r"explain: index=1\.0 has type float"),
    (None, TypeError, r"explain: index=None has type NoneType"),
])
def test_explain_index_is_never_truncated(index, exc, msg):
    with pytest.raises(exc, match=msg):
        qref.explain(_params(), X, index, input_scale=0.1, input_zero_point=3)
    # the same element as ints and as a string is explained
    e = qref.explain(_params(), X, (0, 0, 1, 0), input_scale=0.1, input_zero_point=3)
    assert e.value == qref.explain(_params(), X, "0,0,1,0", input_scale=0.1, input_zero_point=3).value


def test_explain_refuses_a_float_tensor():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"explain: qx\.dtype=torch\.float32 \(must be a torch\.quint8"):
        qref.explain(_params(), torch.zeros(1, 3, 6, 6), (0, 0, 1, 1))
    with pytest.raises(TypeError, match=r"explain: qx\.dtype=float32 \(must be uint8"):
        qref.explain(_params(), X.astype(np.float32), (0, 0, 1, 1), input_scale=0.1, input_zero_point=3)


@pytest.mark.parametrize("shape", [(), (1,), (2, 3), (0, 4), (2, 1, 3)])
def test_quantize_keeps_the_shape(shape):
    """A 0-d input used to come back as shape (1,); torch keeps every shape."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).normal(0, 1, shape).astype(np.float32)
    got = qref.quantize(x, 0.05, 100)
    want = torch.quantize_per_tensor(torch.from_numpy(x), 0.05, 100, torch.quint8).int_repr().numpy()
    assert got.shape == want.shape == shape
    assert np.array_equal(got, want)


X5 = np.zeros((1, 2, 4, 4, 4), np.uint8)
W5 = np.ones((2, 2, 1, 1, 1), np.int8)
W5k = np.ones((2, 2, 3, 3, 3), np.int8)
WT2 = np.ones((3, 4, 3, 3), np.int8)


@pytest.mark.parametrize("call, msg", [
    (lambda: qref.conv3d(X5, W5, padding=(0, 0, 2**31), **Q), r"conv3d: padding\[2\]=2147483648 is out of range"),
    (lambda: qref.conv3d(X5, W5, stride=2**40, **Q), r"conv3d: stride=1099511627776 is out of range"),
    (lambda: qref.conv3d(X5, W5, stride=2**40, kernel="scalar", **Q), r"conv3d: stride=1099511627776 is out of"),
    (lambda: qref.conv3d(X5, W5k, dilation=2**30, padding=2**30, **Q), r"conv3d: kernel span dilation"),
    (lambda: qref.conv3d(X5, W5, groups=2**31, **Q), r"conv3d: groups=2147483648 is out of range"),
    (lambda: qref.conv_transpose2d(X, WT2, padding=(0, 2**31), **Q),
     r"conv_transpose2d: padding\[1\]=2147483648 is out of range"),
    (lambda: qref.conv_transpose2d(X, WT2, stride=2**40, kernel="scalar", **Q),
     r"conv_transpose2d: stride=1099511627776 is out of range"),
    (lambda: qref.conv_transpose2d(X, WT2, dilation=2**20, **Q), r"conv_transpose2d: output shape .* is too large"),
    (lambda: qref.conv_transpose2d(X, WT2, stride=2**30, dilation=2**29, output_padding=1, **Q),
     r"conv_transpose2d: output size \d+ in spatial dim 0 is too large"),
    (lambda: qref.conv_transpose3d(X5, W5k, padding=2**29, **Q), r"conv_transpose3d: output size -\d+ in spatial"),
    (lambda: qref.conv1d(np.zeros((1, 3, 8), np.uint8), np.ones((4, 3, 3), np.int8), stride=2**31, **Q),
     r"conv1d: stride=2147483648 is out of range"),
    (lambda: qref.conv1d(np.zeros((1, 3, 8), np.uint8), np.ones((4, 3, 3), np.int8), padding=(2**31,), **Q),
     r"conv1d: padding\[0\]=2147483648 is out of range"),
])
def test_nd_geometry_refused_by_name_before_allocating(call, msg):
    """Huge strides, paddings and dilations: a ValueError naming the layer's own argument (not
    the conv2d / _core index it becomes), never MemoryError or numpy's "array is too big"."""
    with pytest.raises(ValueError, match=msg):
        call()


def test_huge_broadcast_view_is_refused_before_any_copy():
    """A 2^44-element broadcast view (no memory behind it) is refused from its shape in
    microseconds, not copied first."""
    import time

    big = np.broadcast_to(np.zeros(1, np.uint8), (1 << 20, 1 << 10, 1 << 7, 1 << 7))
    w = np.ones((1, 1 << 10, 1, 1), np.int8)
    for f, x, wt in ((qref.conv2d, big, w), (qref.conv3d, big[:, :, None], w[:, :, None]),
                     (qref.conv_transpose2d, big, np.ones((1 << 10, 1, 1, 1), np.int8)),
                     (qref.linear, big.reshape(-1, 1 << 10), w.reshape(1, -1))):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"input\.shape=.* has 17592186044416 elements \(at most 2\^40"):
            f(x, wt, **Q)
        assert time.perf_counter() - t0 < 1.0
    with pytest.raises(ValueError, match=r"quantize: x\.shape=.* elements \(at most 2\^40"):
        qref.quantize(np.broadcast_to(np.zeros(1, np.float32), (1 << 41,)), 0.1, 0)


def test_reflect_padding_larger_than_the_input_is_refused_like_torch():
    torch = pytest.importorskip("torch")
    nnq = pytest.importorskip("torch.ao.nn.quantized")
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        m = nnq.Conv2d(3, 4, 3, padding=2, padding_mode="reflect")
        m.set_weight_bias(torch.quantize_per_tensor(torch.randn(4, 3, 3, 3) * 0.1, 0.01, 0, torch.qint8),
                          torch.randn(4))
        qx = torch.quantize_per_tensor(torch.rand(1, 3, 2, 2), 0.1, 3, torch.quint8)
        with pytest.raises(RuntimeError, match="Padding size should be less than"):
            m(qx)
        p = qref.from_torch(m)
        for x, kw in ((qx, {}), (np.zeros((1, 3, 2, 2), np.uint8), dict(input_scale=0.1, input_zero_point=3))):
            with pytest.raises(ValueError, match=r"conv2d: padding=\(2, 2\) with padding_mode='reflect' on an input "
                                                 r"of shape \(1, 3, 2, 2\)"):
                p(x, **kw)
        # one more row and column: torch and qref agree again
        qx3 = torch.quantize_per_tensor(torch.rand(1, 3, 3, 3), 0.1, 3, torch.quint8)
        assert torch.equal(p(qx3).int_repr(), m(qx3).int_repr())
        c1 = nnq.Conv1d(3, 4, 3, padding=2, padding_mode="reflect")
        c1.set_weight_bias(torch.quantize_per_tensor(torch.randn(4, 3, 3) * 0.1, 0.01, 0, torch.qint8),
                           torch.randn(4))
        with pytest.raises(ValueError, match=r"conv1d: padding=\(2,\) with padding_mode='reflect'"):
            qref.from_torch(c1)(np.zeros((1, 3, 2), np.uint8), input_scale=0.1, input_zero_point=3)
    finally:
        torch.backends.quantized.engine = prev


def test_compare_max_report_and_qparams():
    torch = pytest.importorskip("torch")
    a = torch.quantize_per_tensor(torch.randn(1, 2, 2, 3), 0.1, 10, torch.quint8)
    with pytest.raises(TypeError, match=r"compare: max_report='a' has type str"):
        qref.compare(a, a, max_report="a")
    with pytest.raises(ValueError, match=r"compare: max_report=-1 is out of range"):
        qref.compare(a, a, max_report=-1)
    assert qref.compare(a, a).ok
    b = torch._make_per_tensor_quantized_tensor(a.int_repr(), 0.5, 99)
    c = qref.compare(b, a)
    assert not c.ok and c.mismatches == 0
    assert any("scale=0.5, zero_point=99" in n for n in c.notes)
    # against qref's own expected output: the conv's output quantization
    x = torch.quantize_per_tensor(torch.rand(1, 3, 6, 6), 0.1, 3, torch.quint8)
    p = _params()
    out = p(x)
    assert qref.compare(out, params=p, input=x).ok
    wrong = torch._make_per_tensor_quantized_tensor(out.int_repr(), 0.3, 10)
    assert not qref.compare(wrong, params=p, input=x).ok


def test_truncated_golden_binary_says_truncated(tmp_path):
    from qref.export import MAGIC, read_bin, write_bin

    f = tmp_path / "a.bin"
    write_bin(str(f), np.arange(12, dtype=np.int32).reshape(3, 4))
    data = f.read_bytes()
    for n in (0, 2, 4, 20, 31):
        f.write_bytes(data[:n])
        with pytest.raises(ValueError, match=rf"is truncated: {n} bytes, shorter than the 32-byte header"):
            read_bin(str(f))
    f.write_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match=r"is not a qref binary \(magic b'XXXX', expected b'QREF'\)"):
        read_bin(str(f))
    f.write_bytes(data[:40])
    with pytest.raises(ValueError, match=r"payload has 8 bytes, header says 48"):
        read_bin(str(f))
    assert MAGIC == b"QREF" and struct.calcsize("<HBB4IQ") == 28


def test_load_case_errors(tmp_path):
    with pytest.raises(TypeError, match=r"load_case: path has type int"):
        qref.load_case(3)
    with pytest.raises(ValueError, match=r"load_case: source='x' is not valid"):
        qref.load_case(str(tmp_path), source="x")
    with pytest.raises(FileNotFoundError, match=r"load_case: .*case\.json does not exist"):
        qref.load_case(str(tmp_path))
    (tmp_path / "case.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"load_case: .*case\.json is not valid JSON"):
        qref.load_case(str(tmp_path))


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: qref.conv_plan((1, 32, 8, 8), (32, 4, 3, 3), (1, 1), (1, 1), (1, 1), 7), ValueError,
     r"conv_plan: groups=7 with C=32 input and O=32 output channels \(both must be divisible by groups\)"),
    (lambda: qref.conv_plan((1, 32, 8, 8), (32, 8, 3, 3), (1, 1), (1, 1), (1, 1), 2), ValueError,
     r"conv_plan: weight_shape has 8 input channels per group but input_shape has C=32 with groups=2"),
    (lambda: qref.conv_plan((1, 32, 8, 8), (32, 32, 3, 3), 0, 1, 1, 1), ValueError,
     r"conv_plan: stride=0 is out of range"),
    (lambda: qref.conv_plan((1, 32, 8), (32, 32, 3, 3), 1, 1, 1, 1), ValueError,
     r"conv_plan: input_shape=\(1, 32, 8\) has 3 entries \(must be 4: \(N, C, H, W\)\)"),
    (lambda: qref.conv_plan((1, 32, 8, 8), (32, 32, 3, 3), (1, 1, 1), 1, 1, 1), ValueError,
     r"conv_plan: stride=\(1, 1, 1\) has 3 entries"),
    (lambda: qref.conv_plan((1, 32, 2, 2), (32, 32, 3, 3), 1, 0, 1, 1), ValueError,
     r"conv_plan: kernel size 3 with dilation 1 spans 3 in spatial dim 0, larger than the padded input 2"),
    (lambda: qref.conv_nd_plan((1, 8, 4, 4, 4), (8, 8, 3, 3, 3), (0, 1, 1), (1, 1, 1), (1, 1, 1), 1), ValueError,
     r"conv_nd_plan: stride\[0\]=0 is out of range"),
    (lambda: qref.conv_nd_plan((1, 8, 4, 4, 4), (8, 8, 3, 3, 3), (1, 1), (1, 1, 1), (1, 1, 1), 1), ValueError,
     r"conv_nd_plan: stride=\(1, 1\) has 2 entries \(must be an int or a sequence of 3 ints\)"),
    (lambda: qref.conv_nd_plan((1, 8, 4), (8, 8, 3), 1, 0, 1, 1), ValueError,
     r"conv_nd_plan: input_shape=\(1, 8, 4\) \(must be 5 ints"),
    (lambda: qref.conv_nd_plan((1, 8, 4, 4, 4), (8, 8, 3, 3, 3), 1, 1, 1, 1, transposed=1), TypeError,
     r"conv_nd_plan: transposed=1 has type int \(must be a bool\)"),
])
def test_plans_validate_like_the_layers(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_plans_agree_with_the_layers():
    """Valid arguments still give the path the layer functions take."""
    assert qref.conv_plan((1, 32, 8, 8), (32, 1, 3, 3), (1, 1), (1, 1), (1, 1), 32).path == "depthwise"
    assert qref.conv_plan((1, 32, 8, 8), (32, 32, 1, 1), 1, 0, 1, 1).path == "pointwise"
    assert qref.conv_nd_plan((1, 8, 4, 4, 4), (8, 8, 3, 3, 3), (1,), (1, 1, 1), (1, 1, 1), 1).path in (
        "groupwise", "im2col")


def test_check_refuses_numpy_inputs():
    torch = pytest.importorskip("torch")
    m = torch.nn.Sequential(torch.ao.nn.quantized.Quantize(0.05, 128, torch.quint8))
    with pytest.raises(TypeError, match=r"check: inputs\[0\] is a numpy float32 array of shape \(1, 3, 4, 4\) "
                                        r"\(the model runs on torch tensors: pass torch\.from_numpy\(x\)\)"):
        qref.check(m, np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(TypeError, match=r"portability: inputs\[1\] is a numpy"):
        qref.portability(m, torch.zeros(1), np.zeros(2))


# ----------------------------------------------------------------------------- CLI


_CLI_CASES = [
    ("builder", "def build():\n    raise ValueError('builder exploded\\nmore')\n", ["check", "m_builder.py:build"],
     r"^qref check: m_builder\.py:build\(\) raised ValueError: builder exploded$"),
    ("syntax", "def build(:\n", ["check", "m_syntax.py:build"],
     r"^qref check: cannot load 'm_syntax\.py': SyntaxError: "),
    ("syntaximport", "def build(:\n", ["explain", "m_syntaximport:build"],
     r"^qref explain: cannot import 'm_syntaximport': SyntaxError: "),
    ("imports", "import qref_no_such_module_xyz\n", ["check", "m_imports.py:build"],
     r"^qref check: cannot load 'm_imports\.py': ModuleNotFoundError: No module named 'qref_no_such_module_xyz'$"),
    ("shape", "def build():\n    return None\n", ["check", "m_shape.py:build", "--input-shape", "100000,100000,100000"],
     r"^qref: --input-shape='100000,100000,100000' has 1000000000000000 elements \(at most 2\^30"),
    ("export", "", ["export", "FILE/sub"], r"^qref export: (NotADirectoryError|FileExistsError|OSError): "),
]

_CLI_HARNESS = """
import contextlib, io, json, sys
from qref.cli import main
out = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(args)
        except SystemExit as e:  # what the interpreter does with sys.exit(...)
            rc = e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException as e:
            rc = "escaped " + type(e).__name__
    out.append((rc, err.getvalue()))
print(json.dumps(out))
"""


def test_cli_failures_are_one_line(tmp_path):
    """Every CLI failure: one line on stderr, no traceback, a non-zero exit (one interpreter runs
    every case through qref.cli.main, as the console script does)."""
    import re

    for name, source, _, _ in _CLI_CASES:
        if source:
            (tmp_path / f"m_{name}.py").write_text(source)
    (tmp_path / "FILE").write_text("a file, not a folder")
    env = {k: v for k, v in os.environ.items() if k != "QREF_TRACEBACK"}
    r = subprocess.run([sys.executable, "-c", _CLI_HARNESS, json.dumps([c[2] for c in _CLI_CASES])],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    for (name, _, args, msg), (rc, err) in zip(_CLI_CASES, json.loads(r.stdout.strip().splitlines()[-1])):
        assert isinstance(rc, int) and rc != 0, (name, rc, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, (name, err)
        assert re.search(msg, lines[0]), (name, lines[0])


# ----------------------------------------------------------------------------- the fuzz worker


def _hostile():
    from hypothesis import strategies as st

    ints = st.one_of(st.integers(-3, 8), st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**40, 2**63, -(2**63),
                                                          2**64, 10**30]))
    floats = st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e-45, 1e-300, 1e300,
                                        -1.0, 0.5, 2.7]), st.floats(allow_nan=True, allow_infinity=True))
    dtypes = st.sampled_from([np.uint8, np.int8, np.int32, np.int64, np.float32, np.float64, np.bool_, np.uint16,
                              np.complex64, object])
    shapes = st.lists(st.integers(0, 4), min_size=0, max_size=5).map(tuple)

    def arr(t):
        dt, shape = t
        if dt is object:
            return np.empty(shape, object)
        return np.zeros(shape, dt)

    arrays = st.tuples(dtypes, shapes).map(arr)
    seqs = st.lists(st.one_of(ints, floats, st.none(), st.text(max_size=3)), max_size=5)
    return st.one_of(st.none(), st.booleans(), ints, floats, st.text(max_size=6), arrays, seqs,
                     seqs.map(tuple), st.just(np.array(3)), st.just(np.array(0.5)), st.just(b"\x00"),
                     st.just({}), st.just(object()))


def _bases(tmp: str) -> dict:
    """name -> (function, positional args, keyword args) of a valid call."""
    rng = np.random.default_rng(3)
    x1 = rng.integers(0, 256, (1, 4, 10), dtype=np.uint8)
    x2 = rng.integers(0, 256, (1, 4, 6, 6), dtype=np.uint8)
    x3 = rng.integers(0, 256, (1, 4, 4, 5, 5), dtype=np.uint8)
    w1 = rng.integers(-128, 128, (4, 4, 3), dtype=np.int8)
    w2 = rng.integers(-128, 128, (4, 4, 3, 3), dtype=np.int8)
    w3 = rng.integers(-128, 128, (4, 4, 3, 3, 3), dtype=np.int8)
    b = rng.normal(0, 1, 4).astype(np.float32)
    out = qref.conv2d(x2, w2, b, padding=1, **Q)
    case_dir = os.path.join(tmp, "case")
    qref.export(case_dir, x2, w2, b, padding=1, **Q)
    geo = dict(stride=1, padding=1, dilation=1, groups=1)
    return {
        "conv1d": (qref.conv1d, [x1, w1, b], dict(geo, **Q)),
        "conv2d": (qref.conv2d, [x2, w2, b], dict(geo, **Q)),
        "conv3d": (qref.conv3d, [x3, w3, b], dict(geo, **Q)),
        "conv_transpose1d": (qref.conv_transpose1d, [x1, w1, b], dict(geo, output_padding=0, **Q)),
        "conv_transpose2d": (qref.conv_transpose2d, [x2, w2, b], dict(geo, output_padding=0, **Q)),
        "conv_transpose3d": (qref.conv_transpose3d, [x3, w3, b], dict(geo, output_padding=0, **Q)),
        "linear": (qref.linear, [rng.integers(0, 256, (3, 8), dtype=np.uint8),
                                 rng.integers(-128, 128, (5, 8), dtype=np.int8), None], dict(Q)),
        "quantize": (qref.quantize, [rng.normal(0, 1, (2, 3)).astype(np.float32), 0.05, 100], {}),
        "explain": (qref.explain, [_params(), rng.integers(0, 256, (1, 3, 6, 6), dtype=np.uint8), (0, 1, 2, 3)],
                    dict(input_scale=0.1, input_zero_point=3, isa="auto")),
        "compare": (qref.compare, [out, out.copy()], dict(layout="NCHW", max_report=10)),
        "export": (qref.export, [os.path.join(tmp, "out"), x2, w2, b], dict(padding=1, **Q)),
        "load_case": (qref.load_case, [case_dir], dict(source="bin")),
        "params": (_params(), [rng.integers(0, 256, (1, 3, 6, 6), dtype=np.uint8)],
                   dict(input_scale=0.1, input_zero_point=3, isa="auto", kernel="auto", threads=None)),
        "conv_plan": (qref.conv_plan, [(1, 4, 6, 6), (4, 4, 3, 3), (1, 1), (1, 1), (1, 1), 1], dict(isa="auto")),
        "conv_nd_plan": (qref.conv_nd_plan, [(1, 4, 4, 5, 5), (4, 4, 3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), 1],
                         dict(isa="auto", transposed=False)),
    }


_OK = (TypeError, ValueError, NotImplementedError)
_PREFIX = {"params": "conv2d"}  # a Conv2dParams call runs (and reports as) conv2d


def _one(f, args: list, kwargs: dict, name: str, picks: list, failures: list) -> None:
    a, kw = list(args), dict(kwargs)
    for (where, key), v in picks:
        if where == "pos":
            a[key] = v
        else:
            kw[key] = v
    try:
        f(*a, **kw)
    except _OK as e:
        # qref's template: "<function>: <argument> <what is wrong> (<the rule>)"; anything else is
        # numpy's or torch's own message escaping
        if not str(e).startswith(f"{_PREFIX.get(name, name)}:"):
            desc = ", ".join(f"{k}={v!r:.60}" for (_, k), v in picks)
            failures.append(f"{name}({desc}): unclear {type(e).__name__}: {str(e)[:200]}")
    except OSError:
        if name not in ("export", "load_case"):
            raise
    except Exception as e:  # noqa: BLE001 - the finding
        desc = ", ".join(f"{k}={v!r:.60}" for (_, k), v in picks)
        failures.append(f"{name}({desc}): {type(e).__name__}: {str(e)[:200]}")


def _worker(n: int, seed: int, only: str = "") -> list:
    """Runs the fuzz; returns the failures as 'function(arguments): exception' strings."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    failures: list = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # a fuzzed relative export path lands here, not in the caller's folder
        for name, (f, args, kwargs) in _bases(tmp).items():
            if only and name != only:
                continue
            slots = [("pos", i) for i in range(len(args))] + [("kw", k) for k in kwargs]
            picks = st.lists(st.tuples(st.sampled_from(slots), _hostile()), min_size=1, max_size=2)

            def make(f, args, kwargs, name):
                def run(p):
                    _one(f, args, kwargs, name, p, failures)
                return run

            test = hseed(seed)(settings(max_examples=n, deadline=None, database=None,
                                        suppress_health_check=list(HealthCheck))(given(picks)(
                                            make(f, args, kwargs, name))))
            test()
    return failures


def _run_worker(n: int, seed: int) -> list:
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), str(n), str(seed)], capture_output=True,
                           text=True, timeout=900, cwd=cwd)
    assert r.returncode == 0, f"the fuzz worker died (rc {r.returncode}): {r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_fuzz_every_public_function_gives_clean_errors():
    failures = _run_worker(int(os.environ.get("QREF_VALIDATION_FUZZ", "40")), 1)
    assert not failures, "\n".join(failures[:30])


@pytest.mark.slow
def test_fuzz_every_public_function_gives_clean_errors_long():
    failures = _run_worker(int(os.environ.get("QREF_VALIDATION_FUZZ_LONG", "400")), 2)
    assert not failures, "\n".join(failures[:30])


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    print(json.dumps(_worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")))
