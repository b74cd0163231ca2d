"""The one-shot layer functions' prepared-weight cache (qref.layers.prep_cache): a weight, bias or
scale changed in place between two calls gives the new result, whatever wrote it (torch in-place
ops, ``tensor.data``, numpy writes into memory a tensor shares, numpy views); the cache is bounded
and drops the entries of freed arrays; threads share entries. The oracle is torch's own quantized op
on the current weights, prepacked afresh, compared with ``==``."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import qref  # noqa: E402
from qref.engines.fbgemm import conv2d as fbgemm_conv2d  # noqa: E402
from qref.layers.prep_cache import MAX_ENTRIES, ONESHOT  # noqa: E402

OUT_S, OUT_ZP = 0.37, 100
ENGINES = ["fbgemm", "x86"]


@pytest.fixture(autouse=True)
def _engine_restored():
    old = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = old


def _ints(rng, shape, lo, hi, dtype):
    return rng.integers(lo, hi, shape, dtype=dtype)


def _torch_conv(kind, qx, qw, bias, engine, **geo):
    torch.backends.quantized.engine = engine
    if kind == "conv2d":
        p = torch.ops.quantized.conv2d_prepack(qw, bias, [geo["stride"]] * 2, [geo["padding"]] * 2, [1, 1],
                                               geo["groups"])
        return torch.ops.quantized.conv2d(qx, p, OUT_S, OUT_ZP).int_repr().numpy()
    if kind == "conv3d":
        p = torch.ops.quantized.conv3d_prepack(qw, bias, [geo["stride"]] * 3, [geo["padding"]] * 3, [1, 1, 1],
                                               geo["groups"])
        return torch.ops.quantized.conv3d(qx, p, OUT_S, OUT_ZP).int_repr().numpy()
    if kind == "conv1d":
        p = torch.ops.quantized.conv1d_prepack(qw, bias, [geo["stride"]], [geo["padding"]], [1], geo["groups"])
        return torch.ops.quantized.conv1d(qx, p, OUT_S, OUT_ZP).int_repr().numpy()
    p = torch.ops.quantized.linear_prepack(qw, bias)
    return torch.ops.quantized.linear(qx, p, OUT_S, OUT_ZP).int_repr().numpy()


def _qref(kind, x, w, bias, engine, numpy_args=None, **geo):
    fn = {"conv2d": qref.conv2d, "conv1d": qref.conv1d, "conv3d": qref.conv3d,
          "linear": qref.linear}[kind]
    kw = dict(output_scale=OUT_S, output_zero_point=OUT_ZP, engine=engine)
    if kind != "linear":
        kw.update(geo)
    if numpy_args:
        kw.update(numpy_args)
    out = fn(x, w, bias, **kw)
    return out.int_repr().numpy() if hasattr(out, "int_repr") else out


LAYERS = {
    # kind: (input shape, weight shape, geometry)
    "conv2d": ((1, 8, 9, 9), (16, 8, 3, 3), dict(stride=1, padding=1, groups=1)),
    "conv1d": ((2, 8, 17), (12, 8, 3), dict(stride=2, padding=1, groups=1)),
    "linear": ((5, 24), (10, 24), {}),
    "conv3d": ((1, 8, 5, 6, 6), (16, 8, 3, 3, 3), dict(stride=1, padding=1, groups=1)),
}


def _operands(kind, seed=0):
    rng = np.random.default_rng(seed)
    xs, ws, geo = LAYERS[kind]
    x = _ints(rng, xs, 0, 256, np.uint8)
    w = _ints(rng, ws, -127, 128, np.int8)
    O = ws[0]
    scales = rng.uniform(0.01, 0.03, O)
    bias = rng.normal(0, 2, O).astype(np.float32)
    return x, w, scales, bias, geo


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_torch_weight_changed_in_place_gives_new_result(kind, engine):
    x, w, scales, bias, geo = _operands(kind)
    rng = np.random.default_rng(1)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, 3)
    w_mem = w.copy()  # numpy memory the weight's int8 values are built from
    qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w_mem), torch.from_numpy(scales),
                                                  torch.zeros(len(scales), dtype=torch.int64), 0)
    tb = torch.from_numpy(bias.copy())
    b_np = tb.numpy()  # shares tb's memory

    def check(what):
        ref = _torch_conv(kind, qx, qw, tb, engine, **geo)
        assert np.array_equal(_qref(kind, qx, qw, tb, engine, **geo), ref), what
        assert np.array_equal(_qref(kind, qx, qw, tb, engine, **geo), ref), what + " (repeated)"

    check("first")

    def new_q():
        return torch._make_per_channel_quantized_tensor(torch.from_numpy(_ints(rng, w.shape, -127, 128, np.int8)),
                                                        torch.from_numpy(scales),
                                                        torch.zeros(len(scales), dtype=torch.int64), 0)

    v = qw._version
    qw.copy_(new_q())
    assert qw._version != v
    check("qw.copy_")
    v = qw._version
    qw.data.copy_(new_q())
    assert qw._version == v  # torch's version counter does not see writes through .data
    check("qw.data.copy_")
    v = qw._version
    qw.data.copy_(new_q())
    qw.data.copy_(new_q())
    check("two writes through .data")
    v = tb._version
    tb.data.mul_(-3)
    assert tb._version == v
    check("bias.data.mul_")
    b_np[0] += 7.5  # numpy write into the tensor's memory: no version change either
    assert tb._version == v
    check("numpy write into the bias tensor's memory")
    tb.add_(1.25)
    check("bias.add_")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_numpy_weight_changed_in_place_gives_new_result(kind, engine):
    x, w, scales, bias, geo = _operands(kind, seed=2)
    rng = np.random.default_rng(3)
    ws_list = [float(s) for s in scales]
    zps = np.zeros(len(scales), np.int64)

    def check(what):
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, 3)
        qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w.copy()),
                                                      torch.tensor(ws_list, dtype=torch.float64),
                                                      torch.from_numpy(zps), 0)
        ref = _torch_conv(kind, qx, qw, torch.from_numpy(bias.copy()), engine, **geo)
        args = dict(input_scale=0.05, input_zero_point=3, weight_scale=ws_list, weight_zero_point=zps)
        assert np.array_equal(_qref(kind, x, w, bias, engine, args, **geo), ref), what
        assert np.array_equal(_qref(kind, x, w, bias, engine, args, **geo), ref), what + " (repeated)"

    check("first")
    w[...] = _ints(rng, w.shape, -127, 128, np.int8)
    check("w[...] = ...")
    w.reshape(-1)[:7] = -w.reshape(-1)[:7].clip(-127, 127)  # through a view
    check("write through a view")
    bias *= -2
    check("bias *= -2")
    ws_list[1] *= 1.7  # a list argument changed in place
    check("weight_scale list changed in place")
    x[...] = _ints(rng, x.shape, 0, 256, np.uint8)
    check("input changed")


def test_numpy_scale_array_changed_in_place():
    x, w, scales, bias, geo = _operands("conv2d", seed=4)
    zps = np.zeros(len(scales), np.int64)
    args = dict(input_scale=0.05, input_zero_point=3, weight_scale=scales, weight_zero_point=zps)
    first = _qref("conv2d", x, w, bias, "fbgemm", args, **geo)
    scales *= 1.9
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, 3)
    qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.from_numpy(scales),
                                                  torch.from_numpy(zps), 0)
    ref = _torch_conv("conv2d", qx, qw, torch.from_numpy(bias), "fbgemm", **geo)
    got = _qref("conv2d", x, w, bias, "fbgemm", args, **geo)
    assert np.array_equal(got, ref)
    assert not np.array_equal(first, ref)  # the change is visible in the output


@pytest.mark.parametrize("kind", ["conv2d", "conv3d"])
def test_repeated_call_reuses_the_prepared_weights(monkeypatch, kind):
    x, w, scales, bias, geo = _operands(kind, seed=5)
    args = dict(input_scale=0.05, input_zero_point=3, weight_scale=scales, weight_zero_point=0)
    calls = []
    real = fbgemm_conv2d.prepare
    monkeypatch.setattr(fbgemm_conv2d, "prepare", lambda *a, **k: calls.append(1) or real(*a, **k))
    outs = [_qref(kind, x, w, bias, "fbgemm", args, **geo) for _ in range(4)]
    assert len(calls) == 1
    assert all(np.array_equal(o, outs[0]) for o in outs)
    w.reshape(-1)[0] ^= 1
    _qref(kind, x, w, bias, "fbgemm", args, **geo)
    assert len(calls) == 2  # the changed weight was packed again


def test_cache_is_bounded_and_drops_freed_weights():
    ONESHOT.clear()
    x, _, scales, bias, geo = _operands("conv2d", seed=6)
    rng = np.random.default_rng(7)
    args = dict(input_scale=0.05, input_zero_point=3, weight_scale=0.02, weight_zero_point=0)
    kept = []
    for _ in range(MAX_ENTRIES + 10):
        w = _ints(rng, LAYERS["conv2d"][1], -127, 128, np.int8)
        kept.append(w)
        _qref("conv2d", x, w, bias, "fbgemm", args, **geo)
        assert len(ONESHOT) <= MAX_ENTRIES
    assert len(ONESHOT) == MAX_ENTRIES
    del kept, w
    gc.collect()
    assert len(ONESHOT) == 0  # every entry's weight was freed
    assert ONESHOT.nbytes == 0


def test_threads_share_entries_and_agree():
    x, w, scales, bias, geo = _operands("conv2d", seed=8)
    args = dict(input_scale=0.05, input_zero_point=3, weight_scale=scales, weight_zero_point=0)
    ref = _qref("conv2d", x, w, bias, "fbgemm", args, **geo)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(_qref("conv2d", x, w, bias, "fbgemm", dict(args, threads=1), **geo))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert len(results) == 80 and all(np.array_equal(r, ref) for r in results)


TRANSPOSED = {
    # kind: (input shape, weight shape (C, O/groups, k...), stride, padding)
    "conv_transpose1d": ((2, 8, 9), (8, 8, 3), 2, 1),  # C == O: torch's x86 engine is wrong for C != O
    "conv_transpose2d": ((1, 8, 6, 7), (8, 8, 3, 3), 2, 1),
}


def _torch_transposed(kind, qx, qw, bias, engine, stride, padding):
    torch.backends.quantized.engine = engine
    nd = qx.dim() - 2
    ops = torch.ops.quantized
    p = getattr(ops, f"{kind}_prepack")(qw, bias, [stride] * nd, [padding] * nd, [0] * nd, [1] * nd, 1)
    return getattr(ops, kind)(qx, p, OUT_S, OUT_ZP).int_repr().numpy()


def _transposed_operands(kind, seed):
    xs, ws, stride, padding = TRANSPOSED[kind]
    rng = np.random.default_rng(seed)
    return rng, _ints(rng, xs, 0, 256, np.uint8), _ints(rng, ws, -127, 128, np.int8), ws, stride, padding


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", list(TRANSPOSED))
def test_transposed_weight_changed_in_place_gives_new_result(kind, engine):
    rng, x, w, ws, stride, padding = _transposed_operands(kind, 11)
    bias = rng.normal(0, 2, ws[1]).astype(np.float32)
    fn = getattr(qref, kind)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, 3)
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w.copy()), 0.02, 0)
    tb = torch.from_numpy(bias.copy())
    geo = dict(stride=stride, padding=padding, output_scale=OUT_S, output_zero_point=OUT_ZP, engine=engine)

    def check_torch(what):
        ref = _torch_transposed(kind, qx, qw, tb, engine, stride, padding)
        for rep in ("", " (repeated)"):
            assert np.array_equal(fn(qx, qw, tb, **geo).int_repr().numpy(), ref), what + rep

    def check_numpy(what):
        qw_now = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w.copy()), 0.02, 0)
        ref = _torch_transposed(kind, qx, qw_now, torch.from_numpy(bias.copy()), engine, stride, padding)
        args = dict(input_scale=0.05, input_zero_point=3, weight_scale=0.02, weight_zero_point=0)
        for rep in ("", " (repeated)"):
            assert np.array_equal(fn(x, w, bias, **args, **geo), ref), what + rep

    def new_q():
        return torch._make_per_tensor_quantized_tensor(torch.from_numpy(_ints(rng, ws, -127, 128, np.int8)), 0.02, 0)

    check_torch("first")
    qw.data.copy_(new_q())
    check_torch("qw.data.copy_")
    qw[...] = new_q()
    check_torch("qw[...] = ...")
    tb.data.mul_(-3)
    check_torch("bias.data.mul_")
    check_numpy("numpy first")
    w[...] = _ints(rng, ws, -127, 128, np.int8)
    check_numpy("w[...] = ...")
    w.reshape(-1)[:5] = -w.reshape(-1)[:5].clip(-127, 127)
    check_numpy("write through a view")


@pytest.mark.parametrize("kind", list(TRANSPOSED))
def test_transposed_repeated_call_reuses_the_prepared_weights(monkeypatch, kind):
    _, x, w, _, stride, padding = _transposed_operands(kind, 12)
    args = dict(input_scale=0.05, input_zero_point=3, weight_scale=0.02, weight_zero_point=0, stride=stride,
                padding=padding, output_scale=OUT_S, output_zero_point=OUT_ZP)
    calls = []
    real = fbgemm_conv2d.prepare
    monkeypatch.setattr(fbgemm_conv2d, "prepare", lambda *a, **k: calls.append(1) or real(*a, **k))
    fn = getattr(qref, kind)
    outs = [fn(x, w, None, **args) for _ in range(4)]
    assert len(calls) == 1
    assert all(np.array_equal(o, outs[0]) for o in outs)
    w.reshape(-1)[0] ^= 1
    fn(x, w, None, **args)
    assert len(calls) == 2
