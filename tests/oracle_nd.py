"""The torch oracle for qref's other layers: linear, conv1d, conv3d, conv_transpose1d/2d.

Same idea as oracle.py (which takes conv2d specs only): a case is a JSON-able dict,
``build(spec)`` makes the same arrays in any process, and ``run_in_subprocess`` runs torch
*and* qref (isa="auto") in a fresh interpreter whose environment (FBGEMM_ENABLE_INSTRUCTIONS)
is set before torch is imported.

Spec fields: kind ("linear" | "conv1d" | "conv3d" | "convt1d" | "convt2d" | "convt3d"), N (batch; for
linear the leading shape ``lead``), C (in channels / features), O (out channels / features),
spatial (input spatial sizes), k (kernel sizes), stride, padding, dilation, output_padding,
groups, per_channel, w_zp (int or "random"), a_zp, relu, bias, act ("full" | "high" | "reduce"),
weight ("full" | "extreme" | "small"), seed, out_scale, out_zp.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from oracle import assert_same, draw_operands, quant_tags, run_worker, serve_worker, torch_operands  # noqa: F401  (assert_same: re-exported)

HERE = os.path.dirname(os.path.abspath(__file__))

_NSPATIAL = {"linear": 0, "conv1d": 1, "convt1d": 1, "conv3d": 3, "convt2d": 2, "convt3d": 3}


def spec(kind: str, **kw: Any) -> dict:
    n = _NSPATIAL[kind]
    s = dict(kind=kind, N=1, lead=[3], C=8, O=8, spatial=[6] * n, k=[3] * n, stride=[1] * n, padding=[0] * n,
             dilation=[1] * n, output_padding=[0] * n, groups=1, per_channel=not kind.startswith("convt"),
             w_zp=0, a_zp=0, relu=False, bias=True, act="full", weight="full", seed=0, out_scale=None, out_zp=None)
    s.update(kw)
    for f in ("spatial", "k", "stride", "padding", "dilation", "output_padding"):
        v = s[f]
        s[f] = [int(v)] * n if isinstance(v, (int, np.integer)) else [int(x) for x in v]
    s["lead"] = [int(x) for x in s["lead"]]
    return s


def case_id(s: dict) -> str:
    parts = [s["kind"], f"c{s['C']}o{s['O']}"]
    if s["kind"] == "linear":
        parts.append("x".join(str(v) for v in s["lead"]) or "1d")
    else:
        parts.append(f"n{s['N']}-" + "x".join(map(str, s["spatial"])) + "-k" + "x".join(map(str, s["k"])))
        for f, tag in (("stride", "s"), ("padding", "p"), ("dilation", "d"), ("output_padding", "op")):
            if any(v != (1 if f in ("stride", "dilation") else 0) for v in s[f]):
                parts.append(tag + "".join(map(str, s[f])))
        if s["groups"] != 1:
            parts.append(f"g{s['groups']}")
    parts += quant_tags(s)
    if s["weight"] != "full":
        parts.append(s["weight"])
    return "-".join(parts)


def weight_shape(s: dict) -> tuple:
    """torch's weight layout for the kind."""
    if s["kind"] == "linear":
        return (s["O"], s["C"])
    if s["kind"].startswith("convt"):
        return (s["C"], s["O"] // s["groups"]) + tuple(s["k"])
    return (s["O"], s["C"] // s["groups"]) + tuple(s["k"])


def build(s: dict) -> dict:
    rng = np.random.default_rng(s["seed"])
    xshape = tuple(s["lead"]) + (s["C"],) if s["kind"] == "linear" else (s["N"], s["C"]) + tuple(s["spatial"])
    K = int(np.prod(s["k"])) * (s["C"] // s["groups"]) if s["kind"] != "linear" else s["C"]
    return draw_operands(rng, s, xshape, weight_shape(s), K)


def _torch_operands(b: dict):
    """(qx, qw, bias) as torch quantized tensors; the tests of every layer build them so."""
    return torch_operands({}, b)


def torch_run(s: dict, b: dict | None = None) -> np.ndarray:
    """torch's quantized op for the kind, packed under the fbgemm engine, in this process."""
    import torch

    b = b or build(s)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        qx, qw, bias = _torch_operands(b)
        q = torch.ops.quantized
        kind, relu = s["kind"], s["relu"]
        if kind == "linear":
            pp = q.linear_prepack(qw, bias)
            y = (q.linear_relu if relu else q.linear)(qx, pp, b["out_scale"], b["out_zp"])
        elif kind == "conv1d":
            pp = q.conv1d_prepack(qw, bias, s["stride"], s["padding"], s["dilation"], s["groups"])
            y = (q.conv1d_relu if relu else q.conv1d)(qx, pp, b["out_scale"], b["out_zp"])
        elif kind == "conv3d":
            pp = q.conv3d_prepack(qw, bias, s["stride"], s["padding"], s["dilation"], s["groups"])
            y = (q.conv3d_relu if relu else q.conv3d)(qx, pp, b["out_scale"], b["out_zp"])
        elif kind == "convt1d":
            pp = q.conv_transpose1d_prepack(qw, bias, s["stride"], s["padding"], s["output_padding"],
                                            s["dilation"], s["groups"])
            y = q.conv_transpose1d(qx, pp, b["out_scale"], b["out_zp"])
        elif kind == "convt2d":
            pp = q.conv_transpose2d_prepack(qw, bias, s["stride"], s["padding"], s["output_padding"],
                                            s["dilation"], s["groups"])
            y = q.conv_transpose2d(qx, pp, b["out_scale"], b["out_zp"])
        elif kind == "convt3d":
            pp = q.conv_transpose3d_prepack(qw, bias, s["stride"], s["padding"], s["output_padding"],
                                            s["dilation"], s["groups"])
            y = q.conv_transpose3d(qx, pp, b["out_scale"], b["out_zp"])
        else:
            raise ValueError(kind)
        return y.int_repr().contiguous().numpy()
    finally:
        torch.backends.quantized.engine = prev


def qref_run(s: dict, b: dict | None = None, isa: str = "auto", **kw: Any) -> np.ndarray:
    import qref

    b = b or build(s)
    ws = b["w_scale"] if b["per_channel"] else float(b["w_scale"][0])
    wz = b["w_zp"] if b["per_channel"] else int(b["w_zp"][0])
    common = dict(input_scale=b["a_scale"], input_zero_point=b["a_zp"], weight_scale=ws, weight_zero_point=wz,
                  output_scale=b["out_scale"], output_zero_point=b["out_zp"], isa=isa, **kw)
    kind = s["kind"]
    if kind == "linear":
        return qref.linear(b["x"], b["w"], b["bias"], relu=s["relu"], **common)
    conv = dict(stride=s["stride"], padding=s["padding"], dilation=s["dilation"], groups=s["groups"])
    if kind == "conv1d":
        return qref.conv1d(b["x"], b["w"], b["bias"], relu=s["relu"], **conv, **common)
    if kind == "conv3d":
        return qref.conv3d(b["x"], b["w"], b["bias"], relu=s["relu"], **conv, **common)
    fn = {"convt1d": qref.conv_transpose1d, "convt2d": qref.conv_transpose2d, "convt3d": qref.conv_transpose3d}[kind]
    return fn(b["x"], b["w"], b["bias"], output_padding=s["output_padding"], **conv, **common)


def plan(s: dict, isa: str = "auto") -> str:
    import qref

    if s["kind"] == "linear":
        return str(qref.linear_plan(isa))
    if s["kind"] == "conv1d":
        wshape = (s["O"], s["C"] // s["groups"], 1, s["k"][0])
        return str(qref.conv_plan((s["N"], s["C"], 1, s["spatial"][0]), wshape, (1, s["stride"][0]),
                                  (0, s["padding"][0]), (1, s["dilation"][0]), s["groups"], isa))
    if s["kind"] == "conv3d":
        return str(qref.conv_nd_plan((s["N"], s["C"]) + tuple(s["spatial"]),
                                     (s["O"], s["C"] // s["groups"]) + tuple(s["k"]), s["stride"], s["padding"],
                                     s["dilation"], s["groups"], isa=isa))
    sp = tuple(s["spatial"]) if s["kind"] != "convt1d" else (1,) + tuple(s["spatial"])
    k = tuple(s["k"]) if s["kind"] != "convt1d" else (1,) + tuple(s["k"])

    def two(f, pad):
        return tuple(s[f]) if s["kind"] != "convt1d" else (pad,) + tuple(s[f])

    return str(qref.conv_nd_plan((s["N"], s["C"]) + sp, (s["O"], s["C"] // s["groups"]) + k, two("stride", 1),
                                 two("padding", 0), two("dilation", 1), s["groups"], transposed=True, isa=isa))


def run_in_subprocess(specs: list[dict], env: dict[str, str]) -> list[dict]:
    """torch and qref (isa="auto") for each spec in a fresh interpreter with `env` set before
    torch is imported. Returns per case: torch, qref (uint8 arrays), plan, isa."""
    return run_worker("oracle_nd.py", {"specs": specs}, env)


def _run_case(s: dict, job: dict) -> tuple:
    b = build(s)
    return torch_run(s, b), qref_run(s, b, isa="auto"), plan(s)


if __name__ == "__main__":
    serve_worker(sys.argv[1], sys.argv[2], _run_case)


def params_for(s: dict, b: dict):
    """The layer's params object (what qref.from_torch returns) for an oracle spec."""
    from qref.bridge_nd import Conv1dParams, Conv3dParams, ConvTransposeParams, LinearParams

    common = dict(weight=b["w"], weight_scale=b["w_scale"], weight_zero_point=b["w_zp"].astype(np.int32),
                  per_channel=b["per_channel"], bias=b["bias"], output_scale=b["out_scale"],
                  output_zero_point=b["out_zp"], relu=s["relu"] and not s["kind"].startswith("convt"),
                  module_type=s["kind"])
    if s["kind"] == "linear":
        return LinearParams(**common)
    conv = dict(stride=tuple(s["stride"]), padding=tuple(s["padding"]), dilation=tuple(s["dilation"]),
                groups=s["groups"])
    if s["kind"] == "conv1d":
        return Conv1dParams(**common, **conv)
    if s["kind"] == "conv3d":
        return Conv3dParams(**common, **conv)
    return ConvTransposeParams(**common, **conv, output_padding=tuple(s["output_padding"]))


def check_params_cache(s: dict, kernel: str) -> None:
    """A params object's first call (public function, then weights prepared) and
    its cached calls (prepared weights) give torch's bytes, for quint8 tensors and uint8 arrays."""
    import torch

    b = build(s)
    t = torch_run(s, b)
    p = params_for(s, b)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["x"]), b["a_scale"], b["a_zp"])
    for i in range(3):  # miss, hit, hit
        assert_same(p(qx, kernel=kernel).int_repr().numpy(), t, f"{case_id(s)} {kernel} torch call {i}")
        assert_same(p(b["x"], input_scale=b["a_scale"], input_zero_point=b["a_zp"], kernel=kernel), t,
                       f"{case_id(s)} {kernel} numpy call {i}")
    if s["kind"] not in ("convt1d", "convt3d"):  # those always run the public function
        assert len(p._prepared) == 2, p._prepared


def check_avx2_subprocess(specs: list) -> None:
    """FBGEMM_ENABLE_INSTRUCTIONS=AVX2 in a subprocess: qref(isa="auto") there equals torch there;
    on the im2col cases with saturating data, isa="avx2" here gives those bytes and the exact
    (isa="vnni") model does not, so the cases discriminate."""
    res = run_in_subprocess(specs, env={"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    for s, r in zip(specs, res):
        assert_same(r["qref"], r["torch"], f"{case_id(s)} (AVX2 subprocess: {r['plan']})")
    sat = [(s, r) for s, r in zip(specs, res) if "im2col" in r["plan"] and s["act"] == "high"]
    assert sat
    for s, r in sat:
        b = build(s)
        assert_same(qref_run(s, b, isa="avx2"), r["torch"], case_id(s) + " isa='avx2'")
        assert not np.array_equal(qref_run(s, b, isa="vnni"), r["torch"]), case_id(s)


def check_sweep(specs: list, show_plan: bool = True) -> None:
    """A random sweep: every spec gives torch's bytes in this process, then (a second pass) under
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 in a subprocess, qref(isa="auto") there equals torch there."""
    for s in specs:
        b = build(s)
        where = f" [{plan(s)}]" if show_plan else ""
        assert_same(qref_run(s, b), torch_run(s, b), f"seed {s['seed']}: {case_id(s)}{where}")
    for s, r in zip(specs, run_in_subprocess(specs, env={"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})):
        where = f" [{r['plan']}]" if show_plan else ""
        assert_same(r["qref"], r["torch"], f"AVX2 seed {s['seed']}: {case_id(s)}{where}")
