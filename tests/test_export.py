"""Golden vectors: qref.export / qref.load_case round trip, re-verified by qref and torch."""

import importlib
import json
import os
import struct

import numpy as np
import pytest

import oracle
import qref

E = importlib.import_module("qref.export")  # the module (qref.export is the function)

CASES = {
    "groupwise-pc": dict(shape=(1, 16, 8, 8), out_channels=16),
    "depthwise-relu": dict(shape=(2, 16, 7, 9), out_channels=16, groups=16, relu=True),
    "im2col-pt-wzp": dict(shape=(1, 6, 9, 7), out_channels=5, kernel=(3, 2), stride=(2, 1), padding=(1, 0),
                          per_channel=False, weight_zero_point=-3),
    "pointwise-nobias": dict(shape=(1, 10, 5, 5), out_channels=7, kernel=(1, 1), padding=(0, 0), bias=False),
}


def _torch_output(kw):
    """torch's quantized::conv2d(_relu) (fbgemm engine) for qref-style conv arguments."""
    import torch

    x, w = kw["input"], kw["weight"]
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), kw["input_scale"], kw["input_zero_point"])
    if np.ndim(kw["weight_scale"]):
        qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.from_numpy(
            np.asarray(kw["weight_scale"], np.float64)), torch.from_numpy(np.asarray(kw["weight_zero_point"],
                                                                                     np.int64)), 0)
    else:
        qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), kw["weight_scale"],
                                                     kw["weight_zero_point"])
    b = None if kw["bias"] is None else torch.from_numpy(kw["bias"])
    return oracle.torch_quantized_conv2d(qx, qw, b, kw["stride"], kw["padding"], kw["dilation"], kw["groups"],
                                         kw["relu"], kw["output_scale"], kw["output_zero_point"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_and_reverify(tmp_path, name, torch_fbgemm):
    kw = E.random_case(seed=sorted(CASES).index(name), **CASES[name])  # isa="auto": this host's torch
    d = str(tmp_path / name)
    assert qref.export(d, **kw) == d
    a = qref.load_case(d)
    b = qref.load_case(d, source="bin")
    assert set(a.arrays) == set(b.arrays)
    for k in a.arrays:
        assert a.arrays[k].dtype == b.arrays[k].dtype and a.arrays[k].shape == b.arrays[k].shape, k
        assert np.array_equal(a.arrays[k].view(np.uint8), b.arrays[k].view(np.uint8)), k
    np.testing.assert_array_equal(a.arrays["input"], kw["input"])
    np.testing.assert_array_equal(a.arrays["weight"], kw["weight"])
    # the stored expected output is torch's, computed here in this process
    oracle.assert_same(a.output, _torch_output(kw), f"{name}: stored output vs torch")
    # and qref recomputes it from the loaded case (host-independent isa) - from both sources
    for c in (a, b):
        v = c.verify()
        assert v.ok, str(v)
        oracle.assert_same(qref.conv2d(**c.conv_kwargs()), a.output, f"{name}: qref from {c.source}")
    # intermediates are qref's stages
    out, inter = qref.conv2d(**a.conv_kwargs(), return_intermediates=True)
    for k in ("acc", "raw", "y"):
        assert np.array_equal(getattr(inter, k).view(np.uint8), a.arrays[k].view(np.uint8)), k
    # exact float32 bit patterns in the json
    m = a.meta
    assert m["quantization"]["input_scale"]["float32_hex"] == "0x%08x" % np.float32(kw["input_scale"]).view(np.uint32)
    ws = np.atleast_1d(np.asarray(kw["weight_scale"], np.float64))
    assert [d["float32_hex"] for d in m["quantization"]["weight_scale"]] == [
        "0x%08x" % v for v in ws.astype(np.float32).view(np.uint32)]
    if kw["bias"] is not None:
        assert [int(d["float32_hex"], 16) for d in m["quantization"]["bias"]] == list(kw["bias"].view(np.uint32))


def test_binary_header_and_memh_are_as_documented(tmp_path):
    kw = E.random_case(seed=1, shape=(1, 8, 4, 5), out_channels=3, padding=(0, 1))
    d = str(tmp_path / "c")
    qref.export(d, **kw)
    meta = json.load(open(os.path.join(d, "case.json")))
    raw = open(os.path.join(d, "bin", "input.bin"), "rb").read()
    assert raw[:4] == b"QREF"
    ver, code, ndim = struct.unpack("<HBB", raw[4:8])
    dims = struct.unpack("<4I", raw[8:24])
    (size,) = struct.unpack("<Q", raw[24:32])
    assert (ver, code, ndim, dims, size) == (1, 1, 4, (1, 4, 5, 8), 160)
    assert raw[32:] == np.ascontiguousarray(kw["input"].transpose(0, 2, 3, 1)).tobytes()  # NHWC
    y = open(os.path.join(d, "bin", "y.bin"), "rb").read()
    assert struct.unpack("<B", y[6:7])[0] == 4
    # memh: one element per line, hex, two's complement / IEEE bits
    w_lines = open(os.path.join(d, "memh", "weight.memh")).read().split()
    w_ohwi = kw["weight"].transpose(0, 2, 3, 1).reshape(-1)
    assert [int(s, 16) for s in w_lines] == list(w_ohwi.view(np.uint8))
    y_lines = open(os.path.join(d, "memh", "y.memh")).read().split()
    assert all(len(s) == 8 for s in y_lines)
    assert meta["arrays"]["output"]["bin_layout"] == "NHWC" and meta["arrays"]["weight"]["bin_layout"] == "OHWI"
    params = dict(line.split() for line in open(os.path.join(d, "params.txt")))
    assert params["input_scale"] == meta["quantization"]["input_scale"]["float32_hex"]
    assert int(params["OW"]) == 5 and int(params["saturate"]) == int(meta["fbgemm"]["saturate"])


def test_export_from_torch_module(tmp_path, torch_fbgemm):
    torch = torch_fbgemm
    import torch.ao.nn.quantized as nnq

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        m = nnq.Conv2d(8, 12, 3, stride=1, padding=1)
        g = torch.Generator().manual_seed(0)
        qw = torch.quantize_per_channel(torch.randn(12, 8, 3, 3, generator=g) * 0.1, torch.rand(12) * 0.01 + 0.002,
                                        torch.zeros(12, dtype=torch.long), 0, torch.qint8)
        m.set_weight_bias(qw, torch.randn(12, generator=g))
        m.scale, m.zero_point = 0.07, 61
        qx = torch.quantize_per_tensor(torch.rand(1, 8, 6, 6), 0.02, 9, torch.quint8)
        ref = m(qx).int_repr().numpy()
        p = qref.from_torch(m)
        d = str(tmp_path / "mod")
        qref.export(d, input=qx, params=p)
        c = qref.load_case(d)
        oracle.assert_same(c.output, ref, "export(params=from_torch(module)) vs the module")
        assert c.verify().ok
    finally:
        torch.backends.quantized.engine = prev


def test_cli_main(tmp_path, capsys):
    d = str(tmp_path / "cli")
    assert E.main([d, "--seed", "4", "--shape", "1,16,6,6", "--out-channels", "16", "--groups", "16",
                   "--isa", "avx2", "--no-memh"]) == 0
    out = capsys.readouterr().out
    assert "depthwise path" in out and "int16-saturating pairs" in out
    c = qref.load_case(d, source="bin")
    assert c.meta["fbgemm"]["saturate"] and c.verify().ok
    assert not os.path.exists(os.path.join(d, "memh"))


def test_errors(tmp_path):
    kw = E.random_case(seed=0, shape=(1, 4, 4, 4), out_channels=4)
    with pytest.raises(TypeError, match="unexpected argument"):
        qref.export(str(tmp_path / "x"), paddng=1, **kw)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "case.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a qref-golden-case"):
        qref.load_case(str(tmp_path / "bad"))
    d = str(tmp_path / "ok")
    qref.export(d, **kw)
    with pytest.raises(ValueError, match="source='hex'"):
        qref.load_case(d, source="hex")
    with open(os.path.join(d, "bin", "output.bin"), "r+b") as f:
        f.seek(40)
        f.write(b"\x07")
    with pytest.raises(ValueError, match="SHA-256"):
        qref.load_case(d, source="bin")


def test_isa_avx2_case_is_torch_under_fbgemm_avx2(tmp_path):
    """A golden case exported with isa="avx2" is what torch computes with fbgemm's AVX2 GEMM
    (FBGEMM_ENABLE_INSTRUCTIONS=AVX2 in a fresh interpreter), on an im2col and a pointwise conv."""
    pytest.importorskip("torch")
    specs = [oracle.spec(C=24, O=32, H=10, W=10, padding=(1, 1), a_zp=128, act="high", seed=11),
             oracle.spec(C=40, O=16, KH=1, KW=1, H=6, W=6, per_channel=False, w_zp=2, act="high", seed=12)]
    res = oracle.run_in_subprocess(specs, env={"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    for i, (s, r) in enumerate(zip(specs, res)):
        b = oracle.build(s)
        ws = b["w_scale"] if b["per_channel"] else float(b["w_scale"][0])
        wz = b["w_zp"] if b["per_channel"] else int(b["w_zp"][0])
        d = str(tmp_path / f"c{i}")
        qref.export(d, b["x"], b["w"], b["bias"], stride=s["stride"], padding=s["padding"],
                    dilation=s["dilation"], groups=s["groups"], input_scale=b["a_scale"],
                    input_zero_point=b["a_zp"], weight_scale=ws, weight_zero_point=wz,
                    output_scale=b["out_scale"], output_zero_point=b["out_zp"], relu=s["relu"], isa="avx2",
                    rtl=False)
        c = qref.load_case(d, source="bin")
        assert c.meta["fbgemm"]["saturate"], r["plan"]
        oracle.assert_same(c.output, r["torch"], f"{oracle.case_id(s)}: isa='avx2' golden vs torch AVX2")
        # and the same case with the VNNI arithmetic differs from that torch (the case discriminates)
        assert not np.array_equal(qref.conv2d(**c.conv_kwargs(isa="vnni")), r["torch"])
