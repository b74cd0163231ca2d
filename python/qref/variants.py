"""Alternative arithmetics: what a custom int8 conv kernel might compute instead of fbgemm.

``model(case, **changes)`` recomputes a conv stage by stage in numpy (exact
int64 accumulation, IEEE float32 one operation at a time) as fbgemm does it --
the same formula as ``csrc/qref/fbgemm/requant.h`` and the scalar kernel, checked
against ``qref.conv2d`` in tests/test_compare.py -- with one or more stages
replaced by a common alternative. ``VARIANTS`` names the alternatives that
``qref.compare`` tries when it diagnoses a mismatching kernel.

Stages and their alternatives (the fbgemm choice first):
- ``products``: "fbgemm" (int16-saturating pairs exactly where fbgemm's path
  and ISA saturate, docs/numerics.md §4.6), "exact" (plain int32 products), "saturate"
  (vpmaddubsw pairs everywhere);
- ``pad``: "zero_point" (padded taps hold the activation zero point, fbgemm's
  im2col memset) or "zero" (the float habit: uint8 0, i.e. real value -a_zp*s);
- ``weight_zp_term``: True, or False (rowsum * w_zp forgotten);
- ``bias``: "fbgemm" (per-tensor: times f32(1/(double)S); per-channel: divided
  by S), "divide" (always divided), "reciprocal" (always times the reciprocal),
  "int32" (rne(bias term) added to the int32 accumulator, the classic
  integer-bias kernel), "after_multiplier" (f32(f32(raw*M) + f32(bias/out))),
  "none" (bias forgotten);
- ``multiplier``: "float" (y = f32(f32(raw + bterm) * M)) or "double" (the
  same product in double with M = S/out in double, rounded once);
- ``rounding``: "half_even" (cvtps2dq), "half_away" (roundf / std::round),
  "half_up" (floor(y + 0.5)), "truncate" (static_cast<int>);
- ``zero_point``: "after_rounding" (fbgemm: rne(y) + zp) or "before_rounding"
  (rne(f32(y + zp)), as oneDNN does);
- ``overflow``: "indefinite" (cvtps2dq gives INT32_MIN for |y| >= 2^31, so a huge
  positive value becomes 0, docs/numerics.md §5.4) or "saturate" (clamp first: 255);
- ``relu_floor``: "zero_point" (fbgemm: max(out, out_zp)) or "zero" (ReLU
  forgotten / clamped at 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import _core
from .common.fp import fma_f32
from .common.operands import (
    _bias_operand,
    _conv2d_geometry,
    _input_operand,
    _output_quant,
    _weight_operand,
)
from .common.validate import check_plan_args
from .engines.fbgemm.conv2d import _conv_plan

STAGES = {
    "products": ("fbgemm", "exact", "saturate"),
    "pad": ("zero_point", "zero"),
    "weight_zp_term": (True, False),
    "bias": ("fbgemm", "divide", "reciprocal", "int32", "after_multiplier", "none"),
    "multiplier": ("float", "double"),
    "rounding": ("half_even", "half_away", "half_up", "truncate"),
    "zero_point": ("after_rounding", "before_rounding"),
    "overflow": ("indefinite", "saturate"),
    "relu_floor": ("zero_point", "zero"),
}
FBGEMM = {k: v[0] for k, v in STAGES.items()}


@dataclass(frozen=True)
class Variant:
    """A named alternative arithmetic: the stages it changes and when it can differ at all."""

    name: str
    changes: dict
    description: str

    def applicable(self, case: "ConvCase") -> bool:
        c = self.changes
        if "products" in c:
            sat = case.saturates
            return (c["products"] == "exact" and sat) or (c["products"] == "saturate" and not sat)
        if c.get("pad") == "zero":
            return case.input_zero_point != 0 and any(case.padding)
        if c.get("weight_zp_term") is False:
            return bool(np.any(case.weight_zero_point != 0))
        if "bias" in c:
            if case.bias is None:
                return False
            if c["bias"] == "divide":
                return not case.per_channel
            return True
        if "relu_floor" in c:
            return case.relu and case.output_zero_point != 0
        return True


VARIANTS: tuple = (
    Variant("exact_products", {"products": "exact"},
            "exact int32 products where fbgemm sums int16-saturating pairs (vpmaddubsw) on this path/ISA"),
    Variant("saturated_pairs", {"products": "saturate"},
            "int16-saturating pair sums (vpmaddubsw) where fbgemm is exact on this path/ISA"),
    Variant("pad_zero", {"pad": "zero"},
            "padding with uint8 0 instead of the activation zero point"),
    Variant("no_weight_zp_term", {"weight_zp_term": False},
            "weight zero point term (rowsum * w_zp) omitted"),
    Variant("bias_divided", {"bias": "divide"},
            "per-tensor bias divided by S instead of multiplied by f32(1/(double)S)"),
    Variant("bias_reciprocal", {"bias": "reciprocal"},
            "bias multiplied by f32(1/(double)S) and rounded before the add (fbgemm divides per-channel, and "
            "per-tensor fuses the multiply into the add with one rounding)"),
    Variant("bias_int32", {"bias": "int32"},
            "bias rounded to int32 (rne(bias/S)) and added to the accumulator before the float conversion"),
    Variant("bias_after_multiplier", {"bias": "after_multiplier"},
            "bias added after the multiplier: f32(f32(raw*M) + f32(bias/out_scale))"),
    Variant("no_bias", {"bias": "none"}, "bias omitted"),
    Variant("multiplier_double", {"multiplier": "double"},
            "(raw + bias term) times the multiplier in double (M = S/out_scale in double), rounded once"),
    Variant("round_half_away", {"rounding": "half_away"},
            "rounding half away from zero (roundf / std::round) instead of half to even (cvtps2dq)"),
    Variant("round_half_up", {"rounding": "half_up"},
            "rounding half up (floor(y + 0.5)) instead of half to even"),
    Variant("truncate", {"rounding": "truncate"},
            "truncation toward zero (static_cast<int>, cvttps2dq) instead of rounding half to even"),
    Variant("zero_point_before_rounding", {"zero_point": "before_rounding"},
            "output zero point added in float before rounding: rne(f32(y + zp))"),
    Variant("overflow_saturates", {"overflow": "saturate"},
            "|y| >= 2^31 clamped to 255/0 instead of cvtps2dq's INT32_MIN (-> 0)"),
    Variant("relu_at_zero", {"relu_floor": "zero"},
            "fused ReLU clamped at 0 (or forgotten) instead of at the output zero point"),
)
VARIANTS_BY_NAME = {v.name: v for v in VARIANTS}


# ----------------------------------------------------------------------------- the case


@dataclass(frozen=True, eq=False)
class ConvCase:
    """One conv, normalised: numpy operands and plain parameters."""

    input: np.ndarray  # uint8 (N, C, H, W)
    weight: np.ndarray  # int8 (O, C/groups, KH, KW)
    bias: Optional[np.ndarray]  # float32 (O,) or None
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    input_scale: float
    input_zero_point: int
    weight_scale: np.ndarray  # float64 (1,) or (O,)
    weight_zero_point: np.ndarray  # int32, same count
    per_channel: bool
    output_scale: float
    output_zero_point: int
    relu: bool
    isa: str
    path: str
    saturates: bool

    def conv_kwargs(self) -> dict:
        """Arguments for ``qref.conv2d`` (input and weight included)."""
        ws: Any = self.weight_scale if self.per_channel else float(self.weight_scale[0])
        wz: Any = self.weight_zero_point if self.per_channel else int(self.weight_zero_point[0])
        return dict(input=self.input, weight=self.weight, bias=self.bias, stride=self.stride,
                    padding=self.padding, dilation=self.dilation, groups=self.groups,
                    input_scale=self.input_scale, input_zero_point=self.input_zero_point, weight_scale=ws,
                    weight_zero_point=wz, output_scale=self.output_scale,
                    output_zero_point=self.output_zero_point, relu=self.relu, isa=self.isa)


CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups", "input_scale",
             "input_zero_point", "weight_scale", "weight_zero_point", "output_scale", "output_zero_point",
             "relu", "isa")


def make_case(fn: str, input: Any = None, weight: Any = None, bias: Any = None, *, stride: Any = 1,
              padding: Any = 0, dilation: Any = 1, groups: Any = 1, input_scale: Any = None, input_zero_point: Any = None,
              weight_scale: Any = None, weight_zero_point: Any = None, output_scale: Any = None,
              output_zero_point: Any = None, relu: bool = False, isa: str = "auto", params: Any = None) -> ConvCase:
    """Normalise conv arguments (as ``qref.conv2d`` takes them, or a ``Conv2dParams``) into a ConvCase."""
    if params is not None:
        given = [k for k, v in (("weight", weight), ("bias", bias), ("weight_scale", weight_scale),
                                ("weight_zero_point", weight_zero_point), ("output_scale", output_scale),
                                ("output_zero_point", output_zero_point)) if v is not None]
        given += [k for k, v, d in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1),
                                    ("groups", groups, 1), ("relu", relu, False)) if v is not d]
        if given:
            raise ValueError(f"{fn}: params= holds the layer's parameters; {', '.join(given)} must not be given "
                             f"with it (only input, input_scale, input_zero_point, isa)")
        x, s, z, pad = params.prepare_input(input, input_scale, input_zero_point)
        kw = params.conv_kwargs()
        return make_case(fn, x, kw["weight"], kw["bias"], stride=kw["stride"], padding=pad,
                         dilation=kw["dilation"], groups=kw["groups"], input_scale=s, input_zero_point=z,
                         weight_scale=kw["weight_scale"], weight_zero_point=kw["weight_zero_point"],
                         output_scale=kw["output_scale"], output_zero_point=kw["output_zero_point"],
                         relu=kw["relu"], isa=isa)
    if input is None or weight is None:
        raise ValueError(f"{fn}: input and weight are both needed to recompute the conv (got "
                         f"input={'None' if input is None else 'given'}, "
                         f"weight={'None' if weight is None else 'given'})")
    if output_scale is None or output_zero_point is None:
        raise ValueError(f"{fn}: output_scale and output_zero_point are needed to recompute the conv")
    act = _input_operand(fn, input, input_scale, input_zero_point)
    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point)
    O = wt.oihw.shape[0]
    b = _bias_operand(fn, bias, O)
    g, st, pd, dl = _conv2d_geometry(fn, groups, stride, padding, dilation)
    out_s, out_zp = _output_quant(fn, output_scale, output_zero_point)
    x = np.ascontiguousarray(act.nhwc.transpose(0, 3, 1, 2))
    # the plan's rules (channels, sizes, isa), reported under this function's name
    check_plan_args(fn, x.shape, wt.oihw.shape, st, pd, dl, g, 2, isa=isa)
    plan = _conv_plan(x.shape, wt.oihw.shape, st, pd, dl, g, isa)
    return ConvCase(x, wt.oihw, b, tuple(st), tuple(pd), tuple(dl), int(g), float(act.scale), int(act.zero_point),
                    np.asarray(wt.scale, np.float64), np.asarray(wt.zero_point, np.int32), bool(wt.per_channel),
                    float(out_s), int(out_zp), bool(relu), isa, plan.path, bool(plan.saturates))


# ----------------------------------------------------------------------------- integer stage


def _wrap32(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, np.int64).astype(np.int32)  # two's complement wrap, as vpaddd / vpmulld


def accumulate(case: ConvCase, *, saturate: bool, pad_value: Optional[int] = None, chunk: int = 1 << 22):
    """(acc, rowsum): int64 arrays (N, O, OH, OW) and (N, G, OH, OW).

    acc = sum over the per-group reduction order k = (kh*KW + kw)*Cg + c of a[k]*w[o][k]; with
    ``saturate`` the pairs (2i, 2i+1) are summed and clipped to int16 first (odd last element pairs
    with 0). Padded taps hold ``pad_value`` (default: the activation zero point, as fbgemm)."""
    x = case.input
    w = case.weight
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    G = case.groups
    Og = O // G
    (sh, sw), (ph, pw), (dh, dw) = case.stride, case.padding, case.dilation
    pv = case.input_zero_point if pad_value is None else int(pad_value)
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    xp = np.full((N, H + 2 * ph, W + 2 * pw, C), pv, np.uint8)
    xp[:, ph:ph + H, pw:pw + W, :] = x.transpose(0, 2, 3, 1)
    K = KH * KW * Cg
    M = N * OH * OW
    # im2col in (kh, kw, c) order per group: A[m, g, k]
    A = np.empty((N, OH, OW, G, KH, KW, Cg), np.uint8)
    for kh in range(KH):
        for kw in range(KW):
            sl = xp[:, kh * dh: kh * dh + (OH - 1) * sh + 1: sh, kw * dw: kw * dw + (OW - 1) * sw + 1: sw, :]
            A[:, :, :, :, kh, kw, :] = sl.reshape(N, OH, OW, G, Cg)
    A = A.reshape(M, G, K)
    Wk = w.transpose(0, 2, 3, 1).reshape(G, Og, K).astype(np.int64)  # OHWI rows, per group
    rowsum = A.sum(axis=2, dtype=np.int64)  # (M, G)
    acc = np.empty((M, G, Og), np.int64)
    if not saturate:
        for g in range(G):
            acc[:, g, :] = A[:, g, :].astype(np.int64) @ Wk[g].T
    else:
        Kp = K + (K & 1)
        Wp = np.zeros((G, Og, Kp), np.int64)
        Wp[:, :, :K] = Wk
        step = max(1, chunk // max(1, Og * Kp))
        for g in range(G):
            w0, w1 = Wp[g, :, 0::2], Wp[g, :, 1::2]  # (Og, Kp/2)
            for m0 in range(0, M, step):
                a = np.zeros((min(step, M - m0), Kp), np.int64)
                a[:, :K] = A[m0:m0 + step, g, :]
                pair = a[:, None, 0::2] * w0[None] + a[:, None, 1::2] * w1[None]
                acc[m0:m0 + step, g, :] = np.clip(pair, -32768, 32767).sum(axis=2)
    acc = acc.reshape(N, OH, OW, O).transpose(0, 3, 1, 2)
    rowsum = rowsum.reshape(N, OH, OW, G).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(acc), np.ascontiguousarray(rowsum)


# ----------------------------------------------------------------------------- requantization


def prepared(case: ConvCase) -> dict:
    """fbgemm's per-channel float32 constants (docs/numerics.md §2.1, §5.1) as the kernels use them
    (``_core.requant_params``: M, col_offset, the per-channel bias term f32(bias / S), the per-tensor
    reciprocal f32(1/(double)S)), plus S and the constants of the alternative arithmetics."""
    O = case.weight.shape[0]
    idx = np.arange(O) if case.per_channel else np.zeros(O, np.int64)
    rq = _core.requant_params(np.ascontiguousarray(case.weight.transpose(0, 2, 3, 1)), float(case.input_scale),
                              int(case.input_zero_point), np.ascontiguousarray(case.weight_scale, np.float64),
                              np.ascontiguousarray(case.weight_zero_point, np.int32), bool(case.per_channel),
                              float(case.output_scale), case.bias, int(case.groups))
    a_f = np.float32(case.input_scale)
    w_f = case.weight_scale.astype(np.float32)[idx]
    o_f = np.float32(case.output_scale)
    S = (a_f * w_f).astype(np.float32)
    Mf = np.asarray(rq["multiplier"], np.float32)
    # fbgemm's reciprocal (per-tensor); per-channel only the alternatives use it
    R = (np.full(O, rq["bias_rcp"], np.float32) if case.bias is not None and not case.per_channel
         else (1.0 / S.astype(np.float64)).astype(np.float32))
    w_zp = case.weight_zero_point.astype(np.int64)[idx]
    col_offset = np.asarray(rq["col_offset"], np.int32)
    out = dict(S=S, M=Mf, R=R, w_zp=w_zp.astype(np.int32), col_offset=col_offset, a_f=a_f, o_f=o_f)
    if case.bias is not None:
        b = case.bias.astype(np.float32)
        divided = np.asarray(rq["bias_term"], np.float32) if case.per_channel else (b / S).astype(np.float32)
        out["bias_divided"] = divided
        out["bias_reciprocal"] = (b * R).astype(np.float32)
        out["bias_term"] = out["bias_divided"] if case.per_channel else out["bias_reciprocal"]
    return out


def _add_bias(raw: np.ndarray, bterm: Optional[np.ndarray], fused: bool, case: "ConvCase", p: dict) -> np.ndarray:
    yf = raw.astype(np.float32)
    if bterm is None:
        return yf
    if fused:
        b = case.bias.astype(np.float32)[None, :, None, None]
        return fma_f32(b, p["R"][None, :, None, None], yf)
    return (yf + bterm).astype(np.float32)


def _rne(y: np.ndarray) -> np.ndarray:
    return np.rint(y)


def model(case: ConvCase, acc_cache: Optional[dict] = None, **changes: Any) -> dict:
    """Stage-by-stage recomputation with ``changes`` applied (see the module docstring).

    Returns dict(out=uint8 (N,O,OH,OW), acc=int32, raw=int32, y=float32 or float64)."""
    st = dict(FBGEMM)
    for k, v in changes.items():
        if k not in STAGES:
            raise ValueError(f"model: unknown stage {k!r} (stages: {', '.join(STAGES)})")
        if v not in STAGES[k]:
            raise ValueError(f"model: {k}={v!r} is not one of {STAGES[k]}")
        st[k] = v
    saturate = {"fbgemm": case.saturates, "exact": False, "saturate": True}[st["products"]]
    pad_value = 0 if st["pad"] == "zero" else case.input_zero_point
    key = (saturate, pad_value)
    cache = acc_cache if acc_cache is not None else {}
    if key not in cache:
        cache[key] = accumulate(case, saturate=saturate, pad_value=pad_value)
    acc64, rowsum = cache[key]
    p = prepared(case)
    O = case.weight.shape[0]
    G = case.groups
    og = np.arange(O) // (O // G)
    acc = _wrap32(acc64)
    col = _wrap32(case.input_zero_point * p["col_offset"].astype(np.int64)).astype(np.int64)
    raw = _wrap32(acc.astype(np.int64) - col[None, :, None, None])
    if st["weight_zp_term"]:
        rs = _wrap32(rowsum)[:, og, :, :].astype(np.int64)
        raw = _wrap32(raw.astype(np.int64) - _wrap32(rs * p["w_zp"].astype(np.int64)[None, :, None, None]))
    Mf = p["M"][None, :, None, None]
    b = st["bias"] if case.bias is not None else "none"
    bterm = None
    fused = b == "fbgemm" and not case.per_channel  # per-tensor: fma(bias, R, float(raw)), one rounding
    if b in ("fbgemm", "divide", "reciprocal", "int32"):
        bterm = {"fbgemm": p.get("bias_term"), "divide": p.get("bias_divided"),
                 "reciprocal": p.get("bias_reciprocal"), "int32": p.get("bias_term")}[b][None, :, None, None]
    if b == "int32":
        raw = _wrap32(raw.astype(np.int64) + _rne(bterm).astype(np.int64))
        bterm = None
    if st["multiplier"] == "double":
        Md = (p["S"].astype(np.float64) / np.float64(p["o_f"]))[None, :, None, None]
        yf = _add_bias(raw, bterm, fused, case, p)
        y = yf.astype(np.float64) * Md
    else:
        yf = _add_bias(raw, bterm, fused, case, p)
        y = (yf * Mf).astype(np.float32)
        if b == "after_multiplier":
            bo = (case.bias.astype(np.float32) / p["o_f"]).astype(np.float32)[None, :, None, None]
            y = ((raw.astype(np.float32) * Mf).astype(np.float32) + bo).astype(np.float32)
    zp = case.output_zero_point
    if st["zero_point"] == "before_rounding":
        y = (y + (np.float32(zp) if y.dtype == np.float32 else np.float64(zp))).astype(y.dtype)
        add_zp = 0
    else:
        add_zp = zp
    rnd = st["rounding"]
    if rnd == "half_even":
        r = _rne(y)
    elif rnd == "half_away":
        r = np.sign(y) * np.floor(np.abs(y) + 0.5) if y.dtype == np.float64 else \
            np.sign(y) * np.floor(np.abs(y).astype(np.float64) + 0.5)
    elif rnd == "half_up":
        r = np.floor(y.astype(np.float64) + 0.5)
    else:
        r = np.trunc(y)
    big = ~((y >= -2147483648.0) & (y < 2147483648.0))
    r = np.where(big, -2147483648.0, r) if st["overflow"] == "indefinite" else \
        np.clip(np.nan_to_num(r, nan=0.0), -2147483648.0, 2147483647.0)
    ri = r.astype(np.int64)
    # requant_output: pack to int16 with saturation, saturating zp add, pack to uint8, clamp [lo, 255]
    ri = np.clip(np.clip(np.clip(ri, -32768, 32767) + add_zp, -32768, 32767), 0, 255)
    lo = zp if (case.relu and st["relu_floor"] == "zero_point") else 0
    out = np.clip(ri, lo, 255).astype(np.uint8)
    return dict(out=out, acc=acc, raw=raw, y=y)
