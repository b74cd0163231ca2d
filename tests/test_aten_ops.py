"""qref.engines.aten vs torch's own quantized CPU kernels, in this process: bytes equal (==).

Inputs come from numpy's RNG (torch.randn differs between CPU capabilities); scales include
tie-rich ones (powers of two, 0.1, 1/255) and outputs saturate. The capability compared is the one
torch picked here; tests/test_aten_capability.py repeats them under every ATEN_CPU_CAPABILITY."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from qref.engines import aten  # noqa: E402

_EXPECT = os.environ.get("QREF_ATEN_EXPECT_CAPABILITY")
if _EXPECT and torch.backends.cpu.get_cpu_capability().lower() != _EXPECT:
    pytest.fail(f"torch runs {torch.backends.cpu.get_cpu_capability()} kernels, not the requested {_EXPECT}",
                pytrace=False)

QDT = {"quint8": torch.quint8, "qint8": torch.qint8}
ZR = {"quint8": (0, 255), "qint8": (-128, 127)}
SCALES = [0.1, 0.5, 0.25, 1.0 / 255, 0.0078125, 0.037, 1.7, 2.0**-10, 0.3333333, 12.5]


def rng(seed):
    return np.random.default_rng(seed)


def rand_q(r, shape, dtype, scale=None, zp=None, channels_last=False):
    lo, hi = ZR[dtype]
    s = float(r.choice(SCALES)) if scale is None else scale
    z = int(r.integers(lo, hi + 1)) if zp is None else zp
    data = r.integers(lo, hi + 1, size=shape).astype(np.uint8 if dtype == "quint8" else np.int8)
    t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(data), s, z)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last if len(shape) == 4 else torch.channels_last_3d)
    return t


def same(a, b):
    assert a.dtype == b.dtype
    assert tuple(a.shape) == tuple(b.shape)
    if a.is_quantized:
        assert a.q_scale() == b.q_scale() and a.q_zero_point() == b.q_zero_point()
        x, y = a.int_repr().numpy(), b.int_repr().numpy()
    else:
        x, y = a.numpy(), b.numpy()
    bad = np.argwhere(x.view(np.uint8) != y.view(np.uint8)) if x.dtype.itemsize == 1 else np.argwhere(
        x.view(np.uint32) != y.view(np.uint32))
    assert bad.size == 0, f"{len(bad)} of {x.size} differ, first at {bad[0].tolist()}: {x[tuple(bad[0])]} vs {y[tuple(bad[0])]}"


SHAPES = [(1, 3, 5, 7), (2, 16, 9, 9), (1, 64, 7, 7), (3, 130), (257,), (1, 24, 56, 56)]


def seeded_input(base, seed, dtype, alternate_layout=False):
    """(the RNG, a quantized input of shape SHAPES[seed]) of case ``seed`` of a test whose RNG seeds
    start at ``base``; ``alternate_layout``: the odd cases of a 4-d shape are channels_last."""
    r = rng(base + seed)
    cl = alternate_layout and len(SHAPES[seed]) == 4 and seed % 2 == 1
    return r, rand_q(r, SHAPES[seed], dtype, channels_last=cl)


def out_q(r, dtype):
    lo, hi = ZR[dtype]
    return float(r.choice(SCALES)), int(r.integers(lo, hi + 1))


# --------------------------------------------------------------------- quantize / dequantize

@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(6))
def test_quantize_per_tensor(dtype, seed):
    r = rng(seed)
    shape = SHAPES[seed % len(SHAPES)]
    s, z = out_q(r, dtype)
    x = (r.standard_normal(shape) * s * r.choice([10, 100, 1000])).astype(np.float32)
    # ties: exact multiples of scale / 2
    x.reshape(-1)[::3] = (r.integers(-600, 600, size=x.reshape(-1)[::3].shape) * (s / 2)).astype(np.float32)
    xt = torch.from_numpy(x)
    same(aten.quantize_per_tensor(xt, scale=s, zero_point=z, dtype=dtype), torch.quantize_per_tensor(xt, s, z, QDT[dtype]))
    if len(shape) == 4:
        xc = xt.contiguous(memory_format=torch.channels_last)
        same(aten.quantize_per_tensor(xc, scale=s, zero_point=z, dtype=dtype),
             torch.quantize_per_tensor(xc, s, z, QDT[dtype]))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_quantize_per_tensor_huge_and_inf(dtype):
    r = rng(7)
    for n in (7, 64, 100, 40000, 70001):
        x = (r.standard_normal(n) * 1e10).astype(np.float32)
        x[::5] = np.inf
        x[1::7] = -np.inf
        x[2::11] = 3e38
        for s, z in ((0.1, ZR[dtype][1]), (1e-3, ZR[dtype][0]), (1.0, 0)):
            xt = torch.from_numpy(x)
            same(aten.quantize_per_tensor(xt, scale=s, zero_point=z, dtype=dtype),
                 torch.quantize_per_tensor(xt, s, z, QDT[dtype]))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("axis", [0, 1])
def test_quantize_per_channel(dtype, axis):
    r = rng(11 + axis)
    x = (r.standard_normal((4, 6, 5, 3)) * 5).astype(np.float32)
    C = x.shape[axis]
    sc = r.choice(SCALES, size=C).astype(np.float64)
    zp = r.integers(*ZR[dtype], size=C).astype(np.int64)
    xt = torch.from_numpy(x)
    ref = torch.quantize_per_channel(xt, torch.from_numpy(sc), torch.from_numpy(zp), axis, QDT[dtype])
    got = aten.quantize_per_channel(xt, scales=sc, zero_points=zp, axis=axis, dtype=dtype)
    assert np.array_equal(got.int_repr().numpy(), ref.int_repr().numpy())
    same(aten.dequantize(ref), ref.dequantize())


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(4))
def test_dequantize(dtype, seed):
    _, q = seeded_input(20, seed, dtype, alternate_layout=True)
    same(aten.dequantize(q), q.dequantize())


# --------------------------------------------------------------------- binary

BIN = {"add": (aten.add, torch.ops.quantized.add), "add_relu": (aten.add_relu, torch.ops.quantized.add_relu),
       "mul": (aten.mul, torch.ops.quantized.mul), "mul_relu": (aten.mul_relu, torch.ops.quantized.mul_relu)}


@pytest.mark.parametrize("op", list(BIN))
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(6))
def test_binary(op, dtype, seed):
    r = rng(100 + seed)
    shape = SHAPES[seed]
    cl = len(shape) == 4 and seed % 2 == 0
    a = rand_q(r, shape, dtype, channels_last=cl)
    b = rand_q(r, shape, dtype, channels_last=cl)
    s, z = out_q(r, dtype)
    ours, ref = BIN[op]
    same(ours(a, b, scale=s, zero_point=z), ref(a, b, s, z))


@pytest.mark.parametrize("op", ["add", "add_relu"])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_add_tie_rich(op, dtype):
    # same scales everywhere, premultiplied zero points rounding: the fma body vs the scalar tail
    r = rng(5)
    for s in (0.1, 0.3, 1.0 / 3):
        for n in (127, 200, 70000):  # tail only; body + tail; two OpenMP chunks (n > 32768)
            lo, hi = ZR[dtype]
            a = rand_q(r, (n,), dtype, scale=s, zp=int(r.integers(lo, hi)))
            b = rand_q(r, (n,), dtype, scale=s, zp=int(r.integers(lo, hi)))
            z = int(r.integers(lo, hi))
            ours, ref = BIN[op]
            same(ours(a, b, scale=s, zero_point=z), ref(a, b, s, z))
            same(ours(a, b, scale=2 * s, zero_point=z), ref(a, b, 2 * s, z))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_add_scalar(relu, dtype):
    r = rng(31)
    for c in (0.0, 0.5, -0.5, 3.7, -12.0, 100.0, -100.0, 1e3):
        x = rand_q(r, (2, 8, 5, 5), dtype)
        ref = (torch.ops.quantized.add_relu if relu else torch.ops.quantized.add)(x, c)
        same(aten.add_scalar(x, c, relu=relu), ref)


# --------------------------------------------------------------------- unary

@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(6))
def test_hardswish(dtype, seed):
    r, x = seeded_input(200, seed, dtype, alternate_layout=True)
    s, z = out_q(r, dtype)
    same(aten.hardswish(x, scale=s, zero_point=z), torch.ops.quantized.hardswish(x, s, z))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(6))
def test_hardsigmoid(dtype, seed):
    _, x = seeded_input(300, seed, dtype)
    same(aten.hardsigmoid(x), torch.nn.functional.hardsigmoid(x))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(4))
def test_leaky_relu(dtype, seed):
    r, x = seeded_input(400, seed, dtype)
    s, z = out_q(r, dtype)
    ns = float(r.choice([0.01, 0.1, 0.2, 0.3333]))
    same(aten.leaky_relu(x, negative_slope=ns, scale=s, zero_point=z),
         torch.ops.quantized.leaky_relu(x, ns, False, s, z))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(4))
def test_threshold(dtype, seed):
    r, x = seeded_input(500, seed, dtype)
    t, v = float(r.standard_normal()), float(r.standard_normal())
    same(aten.threshold(x, threshold=t, value=v), torch.nn.functional.threshold(x, t, v))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(4))
def test_clamp_family(dtype, seed):
    r, x = seeded_input(600, seed, dtype)
    lo, hi = sorted(float(v) for v in r.standard_normal(2) * 5)
    same(aten.clamp(x, min=lo, max=hi), torch.clamp(x, lo, hi))
    same(aten.clamp(x, min=lo), torch.clamp(x, min=lo))
    same(aten.clamp(x, max=hi), torch.clamp(x, max=hi))
    same(aten.hardtanh(x, min_val=lo, max_val=hi), torch.nn.functional.hardtanh(x, lo, hi))
    same(aten.relu6(x), torch.nn.functional.relu6(x))


# --------------------------------------------------------------------- cat

@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_cat(relu, cl, dtype):
    r = rng(700 + 2 * cl + relu)
    for chans in ([3, 5], [16, 24, 8], [64, 7, 40], [33, 130]):
        s, z = out_q(r, dtype)
        xs = [rand_q(r, (2, c, 5, 6), dtype, channels_last=cl) for c in chans]
        xs.append(rand_q(r, (2, 9, 5, 6), dtype, scale=s, zp=z, channels_last=cl))  # same qparams: the memcpy path
        ref = (torch.ops.quantized.cat_relu if relu else torch.ops.quantized.cat)(xs, 1, s, z)
        same(aten.cat(xs, dim=1, scale=s, zero_point=z, relu=relu), ref)
    xs = [rand_q(r, (2, 4, 5, 6), dtype) for _ in range(3)]
    s, z = out_q(r, dtype)
    same(aten.cat(xs, dim=3, scale=s, zero_point=z, relu=relu),
         (torch.ops.quantized.cat_relu if relu else torch.ops.quantized.cat)(xs, 3, s, z))


# --------------------------------------------------------------------- pooling

POOL = [  # shape, kernel, stride, padding, dilation, ceil
    ((1, 3, 12, 12), 3, 2, 1, 1, False), ((2, 16, 9, 11), 2, 2, 0, 1, True), ((1, 64, 7, 7), 3, 1, 1, 1, False),
    ((1, 24, 15, 15), (3, 2), (2, 1), (1, 0), 1, True), ((1, 40, 8, 8), 2, 1, 0, 2, False),
]


@pytest.mark.parametrize("case", range(len(POOL)))
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_max_pool2d(case, cl, dtype):
    shape, k, st, p, d, cm = POOL[case]
    x = rand_q(rng(800 + case), shape, dtype, channels_last=cl)
    same(aten.max_pool2d(x, kernel_size=k, stride=st, padding=p, dilation=d, ceil_mode=cm),
         torch.nn.functional.max_pool2d(x, k, st, p, d, cm))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_max_pool1d(dtype):
    x = rand_q(rng(850), (2, 8, 31), dtype)
    same(aten.max_pool1d(x, kernel_size=3, stride=2, padding=1), torch.nn.functional.max_pool1d(x, 3, 2, 1))


@pytest.mark.parametrize("case", range(len(POOL)))
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5)])
def test_avg_pool2d(case, cl, dtype, cip, div):
    shape, k, st, p, _d, cm = POOL[case]
    x = rand_q(rng(900 + case), shape, dtype, channels_last=cl)
    same(aten.avg_pool2d(x, kernel_size=k, stride=st, padding=p, ceil_mode=cm, count_include_pad=cip,
                         divisor_override=div),
         torch.nn.functional.avg_pool2d(x, k, st, p, cm, cip, div))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("cl", [False, True])
def test_avg_pool3d(dtype, cl):
    x = rand_q(rng(950), (1, 20, 5, 6, 7), dtype, channels_last=cl)
    same(aten.avg_pool3d(x, kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=(1, 1, 0)),
         torch.nn.functional.avg_pool3d(x, (2, 3, 3), (1, 2, 2), (1, 1, 0)))


@pytest.mark.parametrize("out", [(1, 1), (2, 3), (5, 5), (7, 4)])
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_adaptive_avg_pool2d(out, cl, dtype):
    x = rand_q(rng(1000 + out[0]), (2, 40, 9, 13), dtype, channels_last=cl)
    same(aten.adaptive_avg_pool2d(x, output_size=out), torch.nn.functional.adaptive_avg_pool2d(x, out))


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_adaptive_avg_pool3d(cl, dtype):
    x = rand_q(rng(1100), (1, 18, 5, 7, 6), dtype, channels_last=cl)
    same(aten.adaptive_avg_pool3d(x, output_size=(2, 3, 4)), torch.nn.functional.adaptive_avg_pool3d(x, (2, 3, 4)))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("keepdim", [False, True])
def test_mean(dtype, keepdim):
    r = rng(1200)
    for shape in ((2, 16, 7, 7), (1, 960, 7, 7), (3, 5, 1, 9)):
        x = rand_q(r, shape, dtype)
        same(aten.mean(x, dim=(2, 3), keepdim=keepdim), x.mean((2, 3), keepdim=keepdim))
        same(aten.mean(x, dim=-1, keepdim=keepdim), x.mean(-1, keepdim=keepdim))


# --------------------------------------------------------------------- resampling

@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_upsample_nearest(cl, dtype):
    x = rand_q(rng(1300), (1, 6, 5, 7), dtype, channels_last=cl)
    for kw in ({"size": (10, 14)}, {"size": (7, 9)}, {"size": (3, 4)}, {"scale_factor": 2.0},
               {"scale_factor": 1.7}, {"scale_factor": (3.0, 0.6)}):
        same(aten.upsample_nearest2d(x, **kw), torch.nn.functional.interpolate(x, mode="nearest", **kw))


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("ac", [False, True])
def test_upsample_bilinear(cl, dtype, ac):
    x = rand_q(rng(1400), (1, 40, 5, 7), dtype, channels_last=cl)
    for kw in ({"size": (10, 14)}, {"size": (7, 9)}, {"size": (3, 4)}, {"scale_factor": 2.0},
               {"scale_factor": 1.7}):
        same(aten.upsample_bilinear2d(x, align_corners=ac, **kw),
             torch.nn.functional.interpolate(x, mode="bilinear", align_corners=ac, **kw))


# --------------------------------------------------------------------- normalization

@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("C", [3, 16, 40, 64, 100])
def test_batch_norm2d(relu, dtype, C):
    r = rng(1500 + C)
    x = rand_q(r, (2, C, 5, 4), dtype)
    w = torch.from_numpy((r.standard_normal(C) * 0.5 + 1).astype(np.float32))
    b = torch.from_numpy(r.standard_normal(C).astype(np.float32))
    m = torch.from_numpy(r.standard_normal(C).astype(np.float32))
    v = torch.from_numpy((r.random(C) + 0.1).astype(np.float32))
    s, z = out_q(r, dtype)
    op = torch.ops.quantized.batch_norm2d_relu if relu else torch.ops.quantized.batch_norm2d
    ref = op(x, w, b, m, v, 1e-5, s, z)
    got = aten.batch_norm(x, weight=w, bias=b, mean=m, var=v, eps=1e-5, scale=s, zero_point=z, relu=relu)
    same(got, ref)


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_batch_norm1d_3d(dtype):
    r = rng(1600)
    for shape, op in (((4, 20, 9), torch.ops.quantized.batch_norm1d), ((4, 20), torch.ops.quantized.batch_norm1d),
                      ((1, 70, 3, 4, 5), torch.ops.quantized.batch_norm3d)):
        C = shape[1]
        x = rand_q(r, shape, dtype)
        w = torch.from_numpy((r.standard_normal(C) * 0.5 + 1).astype(np.float32))
        b = torch.from_numpy(r.standard_normal(C).astype(np.float32))
        m = torch.from_numpy(r.standard_normal(C).astype(np.float32))
        v = torch.from_numpy((r.random(C) + 0.1).astype(np.float32))
        s, z = out_q(r, dtype)
        same(aten.batch_norm(x, weight=w, bias=b, mean=m, var=v, eps=1e-5, scale=s, zero_point=z),
             op(x, w, b, m, v, 1e-5, s, z))


def _affine(r, n):
    return (torch.from_numpy((r.standard_normal(n) * 0.5 + 1).astype(np.float32)),
            torch.from_numpy(r.standard_normal(n).astype(np.float32)))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("shape,ns", [((4, 10), (10,)), ((2, 3, 100), (100,)), ((2, 5, 8, 8), (8, 8)),
                                      ((3, 130), (130,))])
def test_layer_norm(dtype, shape, ns):
    r = rng(1700 + len(shape))
    x = rand_q(r, shape, dtype)
    w, b = _affine(r, int(np.prod(ns)))
    s, z = out_q(r, dtype)
    same(aten.layer_norm(x, normalized_shape=ns, weight=w.reshape(ns), bias=b.reshape(ns), eps=1e-5, scale=s,
                         zero_point=z),
         torch.ops.quantized.layer_norm(x, list(ns), w.reshape(ns), b.reshape(ns), 1e-5, s, z))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("shape,G", [((2, 8, 5, 5), 2), ((1, 16, 9, 11), 4), ((2, 6, 3, 3), 6), ((1, 32, 10, 10), 8)])
def test_group_and_instance_norm(dtype, shape, G):
    r = rng(1800 + G)
    x = rand_q(r, shape, dtype)
    w, b = _affine(r, shape[1])
    s, z = out_q(r, dtype)
    same(aten.group_norm(x, num_groups=G, weight=w, bias=b, eps=1e-5, scale=s, zero_point=z),
         torch.ops.quantized.group_norm(x, G, w, b, 1e-5, s, z))
    same(aten.instance_norm(x, weight=w, bias=b, eps=1e-5, scale=s, zero_point=z),
         torch.ops.quantized.instance_norm(x, w, b, 1e-5, s, z))


# --------------------------------------------------------------------- argument checks

def test_qtensor_without_torch_objects_matches_torch():
    r = rng(1900)
    a = rand_q(r, (3, 70), "quint8")
    b = rand_q(r, (3, 70), "quint8")
    qa = aten.QTensor(data=a.int_repr().numpy(), scale=a.q_scale(), zero_point=a.q_zero_point())
    qb = aten.QTensor(data=b.int_repr().numpy(), scale=b.q_scale(), zero_point=b.q_zero_point())
    got = aten.add(qa, qb, scale=0.1, zero_point=3)
    assert isinstance(got, aten.QTensor) and got.scale == 0.1 and got.zero_point == 3
    assert np.array_equal(got.data, torch.ops.quantized.add(a, b, 0.1, 3).int_repr().numpy())


@pytest.mark.parametrize("call,exc,words", [
    (lambda x: aten.add(x, x, scale=0.0, zero_point=0), ValueError, ["scale=0.0", "finite normal float32"]),
    (lambda x: aten.add(x, x, scale=0.1, zero_point=300), ValueError, ["zero_point=300", "[0, 255]"]),
    (lambda x: aten.add(x, x, scale=0.1, zero_point=1.5), TypeError, ["zero_point=1.5", "int"]),
    (lambda x: aten.add(x, x[:, :2], scale=0.1, zero_point=0), ValueError, ["shape", "broadcasting"]),
    (lambda x: aten.add(x, x.dequantize(), scale=0.1, zero_point=0), TypeError, ["b", "quantized"]),
    (lambda x: aten.hardswish(x, scale=0.1, zero_point=0, capability="sse"), ValueError, ["capability='sse'"]),
    (lambda x: aten.hardswish(x, scale=0.1, zero_point=0, num_threads=0), ValueError, ["num_threads=0"]),
    (lambda x: aten.mean(x, dim=1), ValueError, ["dim=1", "innermost"]),
    (lambda x: aten.max_pool2d(x, kernel_size=2, padding=2), ValueError, ["padding", "half of kernel_size"]),
    (lambda x: aten.avg_pool2d(x, kernel_size=0), ValueError, ["kernel_size=0"]),
    (lambda x: aten.clamp(x), ValueError, ["min=None and max=None"]),
    (lambda x: aten.cat([], dim=0, scale=0.1, zero_point=0), ValueError, ["xs=[]"]),
    (lambda x: aten.upsample_nearest2d(x, size=(4, 4), scale_factor=2.0), ValueError, ["exactly one"]),
    (lambda x: aten.add_scalar(x, float("nan")), ValueError, ["other=nan", "finite"]),
    (lambda x: aten.group_norm(x, num_groups=3, scale=0.1, zero_point=0), ValueError, ["num_groups=3", "divide"]),
    (lambda x: aten.add(x, x, 0.1, 0), TypeError, ["positional"]),
])
def test_bad_arguments(call, exc, words):
    x = rand_q(rng(1950), (1, 4, 6, 6), "quint8")
    with pytest.raises(exc) as ei:
        call(x)
    for w in words:
        assert w in str(ei.value), (w, str(ei.value))


def test_quantize_refuses_nan_and_wrong_dtype():
    x = np.zeros(10, np.float32)
    x[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        aten.quantize_per_tensor(x, scale=0.1, zero_point=0, dtype="quint8")
    with pytest.raises(TypeError, match="float32"):
        aten.quantize_per_tensor(np.zeros(3), scale=0.1, zero_point=0, dtype="quint8")
    with pytest.raises(ValueError, match="'quint8' or 'qint8'"):
        aten.quantize_per_tensor(np.zeros(3, np.float32), scale=0.1, zero_point=0, dtype="qint32")
    with pytest.raises(ValueError, match=r"zero_point=200 is out of range \(must be in \[-128, 127\]\)"):
        aten.quantize_per_tensor(np.zeros(3, np.float32), scale=0.1, zero_point=200, dtype=torch.qint8)


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("seed", range(4))
def test_sigmoid(dtype, seed):
    r = rng(2000 + seed)
    x = rand_q(r, SHAPES[seed], dtype)
    same(aten.sigmoid(x), torch.sigmoid(x))
    s, z = out_q(r, dtype)
    same(aten.sigmoid(x, scale=s, zero_point=z), torch.ops.quantized.sigmoid(x, s, z))


def test_sleef_expf_is_torchs_vectorized_exp():
    # qsigmoid's SIMD body calls Vectorized<float>::exp (SLEEF's expf_u10 under AVX2/AVX512).
    # torch's float sigmoid kernel computes 1 / (1 + Vectorized::exp(-x)) with the same function
    # (torch.exp itself goes to MKL's vsExp, a different exp), so it checks ours bit for bit.
    import qref._core as core

    if torch.backends.cpu.get_cpu_capability().lower() == "default":
        pytest.skip("Vectorized<float>::exp is std::exp under the DEFAULT capability")
    r = rng(2100)
    x = np.concatenate([r.uniform(-110, 110, 1 << 16), r.standard_normal(1 << 16) * 4]).astype(np.float32)
    ref = torch.sigmoid(torch.from_numpy(x)).numpy()
    got = (np.float32(1) / (np.float32(1) + core.aten_sleef_expf(-x))).astype(np.float32)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def every_byte(r, dtype, n=700):
    """Each representable byte at least twice, shuffled: the SIMD body and the scalar tail both
    see every input value (n > 64 * k leaves a tail of n % 64 elements)."""
    lo, hi = ZR[dtype]
    v = np.tile(np.arange(lo, hi + 1), n // (hi - lo + 1) + 1)[:n]
    return r.permutation(v).astype(np.uint8 if dtype == "quint8" else np.int8)


def q_of(data, scale, zp):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(data), scale, zp)


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_tanh(dtype):
    r = rng(2300)
    for s in SCALES:
        x = q_of(every_byte(r, dtype), s, int(r.integers(*ZR[dtype])))
        same(aten.tanh(x), torch.tanh(x))
    x = rand_q(r, (1, 24, 56, 56), dtype, channels_last=True)  # > 32768 elements: thread chunks
    same(aten.tanh(x), torch.tanh(x))


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_elu(dtype):
    r = rng(2400)
    lo, hi = ZR[dtype]
    for s in SCALES:
        x = q_of(every_byte(r, dtype), s, int(r.integers(lo, hi + 1)))
        so, zo = float(r.choice(SCALES)), int(r.integers(lo, hi + 1))
        same(aten.elu(x, scale=so, zero_point=zo), torch.ops.quantized.elu(x, so, zo))
        a, c, ic = 0.7, 1.2, 0.8
        same(aten.elu(x, scale=so, zero_point=zo, alpha=a, coef=c, input_coef=ic),
             torch.ops.quantized.elu(x, so, zo, a, c, ic))
        same(aten.celu(x, scale=so, zero_point=zo, alpha=1.7), torch.ops.quantized.celu(x, so, zo, 1.7))
    # channels_last in, contiguous out (quantized_elu's allocation): the scalar op on every element
    for s in SCALES:
        x = rand_q(r, (2, 16, 9, 9), dtype, scale=s, channels_last=True)
        so, zo = float(r.choice(SCALES)), int(r.integers(lo, hi + 1))
        y = aten.elu(x, scale=so, zero_point=zo, alpha=0.9)
        assert y.is_contiguous()
        same(y, torch.ops.quantized.elu(x, so, zo, 0.9))
    with pytest.raises(ValueError, match="alpha=0.0"):
        aten.celu(x, scale=0.1, zero_point=lo, alpha=0.0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_gelu(dtype, approximate):
    r = rng(2500)
    for s in SCALES + [float(v) for v in r.uniform(0.001, 0.2, 20)]:
        x = q_of(every_byte(r, dtype), s, int(r.integers(*ZR[dtype])))
        same(aten.gelu(x, approximate=approximate), torch.nn.functional.gelu(x, approximate=approximate))
    with pytest.raises(ValueError, match="approximate='exact'"):
        aten.gelu(x, approximate="exact")


def test_vectorized_tanh_and_erf_are_torchs():
    # Vectorized<float>::tanh is SLEEF's tanhf_u10 and ::erf ATen's own polynomial (with SLEEF's
    # expf_u10) under AVX2/AVX512. torch.tanh / torch.erf on float tensors go elsewhere (MKL), but
    # torch's float gelu kernels (with oneDNN off) evaluate the same expressions as the quantized
    # ones, with the same Vectorized functions: they check ours bit for bit. The tanh form is contracted
    # (x + kappa * x^3 as one fma) by the compiler in the per-capability units.
    import qref._core as core

    if torch.backends.cpu.get_cpu_capability().lower() == "default":
        pytest.skip("Vectorized<float> tanh/erf are the std:: functions under the DEFAULT capability")
    r = rng(2600)
    x = np.concatenate([r.uniform(-10, 10, 1 << 15), r.standard_normal(1 << 15) * 2]).astype(np.float32)
    f = np.float32
    beta, kappa = f(np.sqrt(2.0) * (2.0 / np.sqrt(np.pi)) * 0.5), f(0.044715)
    cube = x * x * x
    inner = (beta * (x.astype(np.float64) + kappa.astype(np.float64) * cube.astype(np.float64)).astype(f)).astype(f)
    got = (f(0.5) * x * (f(1) + core.aten_vec_math(inner, "tanh"))).astype(f)
    ref = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    got = (x * f(0.5) * (f(1) + core.aten_vec_math((x * f(np.sqrt(0.5))).astype(f), "erf"))).astype(f)
    with torch.backends.mkldnn.flags(enabled=False):  # else float gelu('none') runs oneDNN's kernel
        ref = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_mul_scalar(relu, dtype):
    r = rng(2200)
    for c in (2.5, 0.0, -1.0, -0.3, 1e-3):
        x = rand_q(r, (2, 8, 5, 5), dtype)
        ref = (torch.ops.quantized.mul_relu if relu else torch.ops.quantized.mul)(x, c)
        same(aten.mul_scalar(x, c, relu=relu), ref)


@pytest.mark.parametrize("cl", [False, True])
def test_channel_shuffle(cl):
    x = rand_q(rng(2300), (2, 12, 5, 3), "quint8", channels_last=cl)
    for g in (1, 2, 3, 4, 12):
        same(aten.channel_shuffle(x, groups=g), torch.nn.functional.channel_shuffle(x, g))
    xs = rand_q(rng(2301), (2, 12, 5, 3), "qint8")
    with pytest.raises(RuntimeError):
        torch.nn.functional.channel_shuffle(xs, 2)
    with pytest.raises(TypeError, match="must be quint8"):
        aten.channel_shuffle(xs, groups=2)


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("cl", [False, True])
def test_prelu(dtype, cl):
    r = rng(2400)
    for C, wn in ((8, 8), (8, 1), (70, 70)):
        x = rand_q(r, (2, C, 5, 4), dtype, channels_last=cl)
        w = rand_q(r, (wn,), dtype)
        s, z = out_q(r, dtype)
        same(aten.prelu(x, w, scale=s, zero_point=z), torch.ops.quantized.prelu(x, w, s, z))


@pytest.mark.parametrize("per_channel", [False, True])
def test_linear_dynamic(per_channel):
    # quantized::linear_dynamic / linear_relu_dynamic with torch's own packed weights; inputs of
    # every magnitude (the dynamic scale below the small-scale cutoff too), float outputs compared bit
    # for bit.
    r = rng(2700)
    for i, (k, n) in enumerate([(16, 8), (64, 33), (100, 7), (3, 5), (256, 64)]):
        w = torch.from_numpy(r.standard_normal((n, k)).astype(np.float32) * 0.1)
        if per_channel:
            qw = torch.quantize_per_channel(w, torch.from_numpy(r.uniform(1e-3, 3e-3, n)),
                                            torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        else:
            qw = torch.quantize_per_tensor(w, 0.002, 0, torch.qint8)
        bias = None if i == 2 else torch.from_numpy(r.standard_normal(n).astype(np.float32))
        packed = torch.ops.quantized.linear_prepack(qw, bias)
        for mag in (1e-6, 0.01, 1.0, 30.0, 1e4):
            x = torch.from_numpy((r.standard_normal((2, 3, k)) * mag + r.choice([0.0, mag, -mag])).astype(np.float32))
            for rr in (True, False):
                same(aten.linear_dynamic(x, qw, bias, reduce_range=rr),
                     torch.ops.quantized.linear_dynamic(x, packed, reduce_range=rr))
                same(aten.linear_dynamic(x, qw, bias, reduce_range=rr, relu=True),
                     torch.ops.quantized.linear_relu_dynamic(x, packed, reduce_range=rr))
    with pytest.raises(ValueError, match="last dimension"):
        aten.linear_dynamic(torch.zeros(2, k + 1), qw, bias)
    with pytest.raises(TypeError, match="torch.qint8"):
        aten.linear_dynamic(x, w, bias)
    with pytest.raises(ValueError, match="NaN"):
        aten.linear_dynamic(torch.full((1, k), float("nan")), qw, bias)


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_softmax(dtype):
    # quantized::softmax = quantize_per_tensor(float softmax(dequantize(x))): rows shorter than,
    # equal to and longer than a SIMD vector, with partial last vectors; every capability
    # (tests/test_aten_capability.py) has its own exp and summation order.
    r = rng(2800)
    lo, hi = ZR[dtype]
    for n in (1, 3, 7, 8, 13, 16, 17, 33, 64, 100, 257):
        for s in (0.05, 0.3333333, 1.7, 2.0**-10):
            x = rand_q(r, (3, 2, n), dtype, scale=s)
            so, zo = 1.0 / 256, lo
            same(aten.softmax(x, dim=-1, scale=so, zero_point=zo), torch.ops.quantized.softmax(x, -1, so, zo))
            so, zo = float(r.choice(SCALES)), int(r.integers(lo, hi + 1))
            same(aten.softmax(x, dim=2, scale=so, zero_point=zo), torch.ops.quantized.softmax(x, 2, so, zo))
    x = rand_q(r, (2, 5, 1), dtype)  # a dim followed by size-1 dims only
    same(aten.softmax(x, dim=1, scale=0.01, zero_point=lo), torch.ops.quantized.softmax(x, 1, 0.01, lo))
    with pytest.raises(ValueError, match="last dimension only"):
        aten.softmax(rand_q(r, (2, 5, 3), dtype), dim=1, scale=0.01, zero_point=lo)
