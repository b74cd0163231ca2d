"""The torch oracle for qref's tests.

A case is a JSON-able dict (``spec``); ``build(spec)`` turns it into the same
arrays in any process, so a subprocess started with FBGEMM_ENABLE_INSTRUCTIONS
set before torch is imported can rebuild it, run torch *and* qref (isa="auto"
there resolves to that process's fbgemm), and hand both outputs back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def spec(**kw: Any) -> dict:
    """A conv case; every unspecified field gets a default."""
    s = dict(N=1, C=8, H=8, W=8, O=8, KH=3, KW=3, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
             per_channel=True, w_zp=0, a_zp=0, relu=False, bias=True, act="full", weight="full", seed=0,
             a_scale=None, out_scale=None, out_zp=None, bias_scale=1.0)
    s.update(kw)
    for k in ("stride", "padding", "dilation"):
        if isinstance(s[k], int):
            s[k] = (s[k], s[k])
        s[k] = tuple(int(v) for v in s[k])
    return s


def case_id(s: dict) -> str:
    parts = [f"n{s['N']}c{s['C']}h{s['H']}w{s['W']}o{s['O']}k{s['KH']}x{s['KW']}"]
    if s["stride"] != (1, 1):
        parts.append(f"s{s['stride'][0]}{s['stride'][1]}")
    if s["padding"] != (0, 0):
        parts.append(f"p{s['padding'][0]}{s['padding'][1]}")
    if s["dilation"] != (1, 1):
        parts.append(f"d{s['dilation'][0]}{s['dilation'][1]}")
    if s["groups"] != 1:
        parts.append(f"g{s['groups']}")
    return "-".join(parts + quant_tags(s))


def quant_tags(s: dict) -> list:
    """The case-id parts of a spec's quantization and data (oracle_nd's ids end with them too)."""
    tags = ["pc" if s["per_channel"] else "pt"]
    if s["w_zp"] != 0:
        tags.append(f"wzp{s['w_zp']}")
    if s["a_zp"]:
        tags.append(f"azp{s['a_zp']}")
    if s["relu"]:
        tags.append("relu")
    if not s["bias"]:
        tags.append("nobias")
    if s["act"] != "full":
        tags.append(s["act"])
    return tags


def build(s: dict) -> dict:
    """Integer arrays and float parameters of a case (deterministic in the seed)."""
    rng = np.random.default_rng(s["seed"])
    N, C, H, W, O, KH, KW, G = (s[k] for k in ("N", "C", "H", "W", "O", "KH", "KW", "groups"))
    return draw_operands(rng, s, (N, C, H, W), (O, C // G, KH, KW), KH * KW * (C // G))


_ACT_RANGES = {
    "full": (0, 256),
    "reduce": (0, 128),  # reduce_range activations: 7-bit
    "high": (200, 256),  # large activations: many saturated pairs
}


def draw_operands(rng: np.random.Generator, s: dict, xshape: tuple, wshape: tuple, K: int) -> dict:
    """The random operands of a case of any layer (oracle_nd uses it too): activations by
    s["act"], weights by s["weight"], per-tensor or per-channel (axis 0) quantization, and an
    output scale that keeps most outputs in range; ``K`` is the reduction length."""
    lo, hi = _ACT_RANGES[s["act"]]
    x = rng.integers(lo, hi, xshape, dtype=np.uint8)
    if s["weight"] == "full":
        w = rng.integers(-128, 128, wshape, dtype=np.int8)
    elif s["weight"] == "extreme":
        w = rng.choice(np.array([-128, 127, -127, 126], np.int8), size=wshape)
    else:
        w = rng.integers(-20, 21, wshape, dtype=np.int8)
    O = s["O"]  # output channels (not wshape[0] for a transposed conv)
    a_scale = s.get("a_scale") or float(np.float32(rng.uniform(0.005, 0.05)))
    if s["per_channel"]:
        w_scale = rng.uniform(0.0005, 0.01, O).astype(np.float32).astype(np.float64)
        w_zp = (rng.integers(-10, 11, O) if s["w_zp"] == "random" else np.full(O, int(s["w_zp"]))).astype(np.int64)
    else:
        w_scale = np.array([float(np.float32(rng.uniform(0.0005, 0.01)))])
        w_zp = np.array([int(rng.integers(-10, 11)) if s["w_zp"] == "random" else int(s["w_zp"])], np.int64)
    # Output scale that keeps most outputs in range: typical |acc| ~ sqrt(K) * 128 * 74.
    typical = float(np.sqrt(K) * 128 * 74 * a_scale * float(np.median(w_scale)))
    out_scale = s["out_scale"] or float(np.float32(typical / rng.uniform(20, 60)))
    out_zp = s["out_zp"] if s["out_zp"] is not None else int(rng.integers(0, 256))
    bias = None
    if s["bias"]:
        bias = (rng.normal(0, 1, O) * typical * s.get("bias_scale", 1.0)).astype(np.float32)
    return dict(x=x, w=w, a_scale=a_scale, a_zp=int(s["a_zp"]), w_scale=w_scale, w_zp=w_zp,
                per_channel=bool(s["per_channel"]), bias=bias, out_scale=out_scale, out_zp=out_zp)


def torch_operands(s: dict, b: dict):
    import torch

    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["x"]), b["a_scale"], b["a_zp"])
    wi = torch.from_numpy(b["w"])
    if b["per_channel"]:
        qw = torch._make_per_channel_quantized_tensor(wi, torch.from_numpy(b["w_scale"]),
                                                      torch.from_numpy(b["w_zp"]), 0)
    else:
        qw = torch._make_per_tensor_quantized_tensor(wi, float(b["w_scale"][0]), int(b["w_zp"][0]))
    bias = None if b["bias"] is None else torch.from_numpy(b["bias"])
    return qx, qw, bias


def fx_quantize(model, example, engine: str, calibration=None):
    """torch's FX post-training quantization of a float ``model`` (in eval mode) with ``engine``'s
    default qconfig mapping: prepare_fx with ``example``, one forward per calibration input (by
    default the example itself), convert_fx. The caller holds ``engine`` as the quantized engine
    (qref.demo.quantized_engine) around this call."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    prepared = prepare_fx(model, get_default_qconfig_mapping(engine), example_inputs=(example,))
    for x in (example,) if calibration is None else calibration:
        prepared(x)
    return convert_fx(prepared)


def torch_quantized_conv2d(qx, qw, bias, stride, padding, dilation, groups: int, relu: bool, out_scale: float,
                           out_zp: int, engine: str = "fbgemm") -> np.ndarray:
    """torch's quantized::conv2d(_relu) on quantized tensors, weights packed under ``engine`` (in this
    process; the previous engine is restored); the output's uint8 values."""
    import torch

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        pp = torch.ops.quantized.conv2d_prepack(qw, bias, list(stride), list(padding), list(dilation), groups)
        op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
        return op(qx, pp, out_scale, out_zp).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = prev


def torch_conv(s: dict, b: dict | None = None, engine: str = "fbgemm") -> np.ndarray:
    """torch's quantized::conv2d(_relu) under ``engine`` (fbgemm by default), in this process."""
    b = b or build(s)
    qx, qw, bias = torch_operands(s, b)
    return torch_quantized_conv2d(qx, qw, bias, s["stride"], s["padding"], s["dilation"], s["groups"], s["relu"],
                                  b["out_scale"], b["out_zp"], engine)


def qref_conv(s: dict, b: dict | None = None, isa: str = "auto", kernel: str = "auto", threads=None,
              intermediates: bool = False):
    import qref

    b = b or build(s)
    ws = b["w_scale"] if b["per_channel"] else float(b["w_scale"][0])
    wz = b["w_zp"] if b["per_channel"] else int(b["w_zp"][0])
    return qref.conv2d(b["x"], b["w"], b["bias"], stride=s["stride"], padding=s["padding"], dilation=s["dilation"],
                       groups=s["groups"], input_scale=b["a_scale"], input_zero_point=b["a_zp"], weight_scale=ws,
                       weight_zero_point=wz, output_scale=b["out_scale"], output_zero_point=b["out_zp"],
                       relu=s["relu"], isa=isa, kernel=kernel, threads=threads,
                       return_intermediates=intermediates)


def run_in_subprocess(specs: list[dict], env: dict[str, str], kernel: str = "auto") -> list[dict]:
    """Run torch and qref (isa="auto") for each spec in a fresh interpreter with `env` set
    before torch is imported. Returns per case: torch, qref (uint8 arrays), plan."""
    return run_worker("oracle.py", {"specs": specs, "kernel": kernel}, env)


def run_worker(script: str, job: dict, env: dict[str, str]) -> list[dict]:
    """Run tests/`script` (whose main is serve_worker) on `job` in a fresh interpreter with
    `env` set before torch is imported. Returns per spec: torch, qref (uint8 arrays), plan, isa."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "specs.json")
        out = os.path.join(d, "out.npz")
        with open(inp, "w") as f:
            json.dump(job, f)
        e = dict(os.environ)
        e.update(env)
        r = subprocess.run([sys.executable, os.path.join(HERE, script), inp, out], env=e,
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"{script} subprocess failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        z = np.load(out, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return [dict(torch=z[f"t{i}"], qref=z[f"q{i}"], plan=meta["plans"][i], isa=meta["isa"])
                for i in range(len(job["specs"]))]


def serve_worker(inp: str, out: str, run_case) -> None:
    """The subprocess side of run_worker: torch is imported only here, after the environment
    is set; ``run_case(spec, job)`` gives (torch output, qref output, plan) per spec."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch  # noqa: F401  (imported after the environment is set)

    import qref

    with open(inp) as f:
        job = json.load(f)
    arrays = {}
    plans = []
    for i, s in enumerate(job["specs"]):
        arrays[f"t{i}"], arrays[f"q{i}"], plan = run_case(s, job)
        plans.append(plan)
    np.savez(out, meta=json.dumps(dict(plans=plans, isa=str(qref.torch_isa()))), **arrays)


def first_mismatch_message(actual: np.ndarray, expected: np.ndarray, what: str = "", acc=None) -> str:
    bad = np.argwhere(actual != expected)
    idx = tuple(int(v) for v in bad[0])
    at = f"(n, c, h, w) = {idx}" if actual.ndim == 4 else str(idx)
    msg = (f"{what}: {len(bad)} of {actual.size} elements differ; first at {at}: "
           f"qref {int(actual[idx])} vs torch {int(expected[idx])}")
    if acc is not None:
        msg += f"; accumulator {int(acc[idx])}"
    return msg


def assert_same(actual: np.ndarray, expected: np.ndarray, what: str = "", acc=None) -> None:
    """Bit-exact: every element equal, shapes equal. Reports the first mismatch."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} vs {expected.dtype}"
    if not np.array_equal(actual, expected):
        raise AssertionError(first_mismatch_message(actual, expected, what, acc))


def _run_case(s: dict, job: dict) -> tuple:
    import qref

    s = spec(**s)
    b = build(s)
    t = torch_conv(s, b)
    q = qref_conv(s, b, isa="auto", kernel=job["kernel"])
    plan = str(qref.conv_plan((s["N"], s["C"], s["H"], s["W"]), (s["O"], s["C"] // s["groups"], s["KH"], s["KW"]),
                              s["stride"], s["padding"], s["dilation"], s["groups"]))
    return t, q, plan


if __name__ == "__main__":
    serve_worker(sys.argv[1], sys.argv[2], _run_case)
