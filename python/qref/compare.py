"""qref.compare: check a custom kernel's uint8 output bit for bit, and diagnose a mismatch.

    cmp = qref.compare(my_out, input=x, weight=w, bias=b, padding=1, input_scale=..., ...)
    assert cmp.ok, cmp          # str(cmp) lists the first mismatches and the diagnosis

With the conv arguments given, the expected output is qref's (torch's fbgemm
arithmetic for ``isa``), and a mismatch is diagnosed: every alternative
arithmetic of ``qref.variants.VARIANTS`` that applies to this conv is
recomputed and scored by how many of the mismatching elements it explains
(and how many matching elements it would break). A variant that reproduces
the custom output everywhere names the bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Optional

import numpy as np

from . import variants as V
from .common.validate import check_choice, check_int, is_torch_tensor
from .layers.conv2d import conv2d


@dataclass(frozen=True)
class Mismatch:
    """One mismatching element: (n, c, h, w), both values and qref's stages there."""

    index: tuple
    actual: int
    expected: int
    acc: Optional[int] = None  # int32 sum of products (saturated pairs where fbgemm saturates)
    raw: Optional[int] = None  # int32 after the zero-point terms
    y: Optional[float] = None  # float32 pre-rounding value

    def __str__(self) -> str:
        s = f"{self.index}: actual {self.actual}, expected {self.expected}"
        if self.acc is not None:
            s += f" (acc {self.acc}, raw {self.raw}, y {self.y!r})"
        return s


@dataclass(frozen=True)
class Candidate:
    """An alternative arithmetic scored against the custom output."""

    name: str
    description: str
    explained: int  # mismatching elements where the custom output equals this variant
    mismatches: int  # all mismatching elements
    breaks: int  # matching elements where this variant would differ from the custom output

    @property
    def exact(self) -> bool:
        """The variant reproduces the custom output everywhere."""
        return self.explained == self.mismatches and self.breaks == 0

    def __str__(self) -> str:
        tag = "  <- reproduces the custom output exactly" if self.exact else ""
        return (f"{self.name}: explains {self.explained}/{self.mismatches} mismatches"
                f"{f', breaks {self.breaks} matching' if self.breaks else ''}{tag}\n    {self.description}")


@dataclass(frozen=True)
class Comparison:
    ok: bool
    mismatches: int
    numel: int
    max_abs_diff: int
    first: list = field(default_factory=list)  # [Mismatch]
    diagnosis: Optional[list] = None  # [Candidate], best first; None without conv arguments
    expected_source: str = "given"  # "given" or "qref (isa=...)"
    notes: list = field(default_factory=list)

    @property
    def best(self) -> Optional[Candidate]:
        """The variant that reproduces the custom output exactly, if one does."""
        if self.diagnosis and self.diagnosis[0].exact:
            return self.diagnosis[0]
        return None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            lines = [f"OK: all {self.numel} elements equal (expected: {self.expected_source})"]
        else:
            lines = [f"MISMATCH: {self.mismatches} of {self.numel} elements differ, max |diff| {self.max_abs_diff} "
                     f"(expected: {self.expected_source})",
                     "first mismatches (n, c, h, w):"]
            lines += [f"  {m}" for m in self.first]
            if self.diagnosis is not None:
                if not self.diagnosis:
                    lines.append("diagnosis: no known alternative arithmetic explains any mismatch")
                else:
                    b = self.best
                    verdict = f"the custom output is {b.name}" if b else "no single variant explains everything"
                    lines.append(f"diagnosis: {verdict}")
                    lines += ["  " + str(c).replace("\n", "\n  ") for c in self.diagnosis]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _as_uint8(fn: str, name: str, a: Any, layout: str) -> np.ndarray:
    if is_torch_tensor(a):
        import torch

        if a.is_quantized:
            if a.dtype != torch.quint8:
                raise TypeError(f"{fn}: {name} is a quantized tensor of dtype {a.dtype}; expected quint8")
            a = a.int_repr()
        if a.dtype != torch.uint8:
            raise TypeError(f"{fn}: {name} is a torch tensor of dtype {a.dtype}; expected uint8 or quint8")
        a = a.detach().cpu().contiguous().numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy uint8 array or a torch uint8/quint8 tensor, "
                        f"got {type(a).__name__}")
    if a.dtype != np.uint8:
        raise TypeError(f"{fn}: {name} has dtype {a.dtype}, expected uint8 (qref never casts silently)")
    if a.ndim != 4:
        raise ValueError(f"{fn}: {name} has shape {a.shape}, expected 4 dimensions ({layout})")
    if layout == "NHWC":
        a = a.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a)


def _qparams(t: Any) -> tuple | None:
    """(scale, zero point) of a per-tensor quantized torch tensor, else None."""
    if is_torch_tensor(t) and t.is_quantized:
        import torch

        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            return float(t.q_scale()), int(t.q_zero_point())
    return None


def _score(actual: np.ndarray, mis: np.ndarray, n_mis: int, out: np.ndarray, name: str, desc: str) -> Candidate:
    eq = out == actual
    explained = int(np.count_nonzero(eq & mis))
    breaks = int(np.count_nonzero(~eq & ~mis))
    return Candidate(name, desc, explained, n_mis, breaks)


def diagnose(case: V.ConvCase, actual: np.ndarray, expected: np.ndarray, max_combo: int = 6) -> list:
    """Score every applicable variant (then pairs of the promising ones if none is exact)."""
    mis = actual != expected
    n_mis = int(np.count_nonzero(mis))
    cache: dict = {}
    found = []
    for v in V.VARIANTS:
        if not v.applicable(case):
            continue
        out = V.model(case, cache, **v.changes)["out"]
        c = _score(actual, mis, n_mis, out, v.name, v.description)
        if c.explained:
            found.append((c, v))
    found.sort(key=lambda cv: (not cv[0].exact, -cv[0].explained, cv[0].breaks))
    result = [c for c, _ in found]
    if result and not result[0].exact:
        # Two bugs at once: try pairs of the variants that explain something.
        combos = []
        top = [v for _, v in found[:max_combo]]
        for a, b in combinations(sorted(top, key=V.VARIANTS.index), 2):
            if set(a.changes) & set(b.changes):
                continue
            out = V.model(case, cache, **a.changes, **b.changes)["out"]
            c = _score(actual, mis, n_mis, out, f"{a.name} + {b.name}", f"{a.description}; and {b.description}")
            if c.exact or c.explained > result[0].explained:
                combos.append(c)
        combos.sort(key=lambda c: (not c.exact, -c.explained, c.breaks))
        result = combos[:3] + result
        result.sort(key=lambda c: (not c.exact, -c.explained, c.breaks))
    return result


def compare(actual: Any, expected: Any = None, *, layout: str = "NCHW", max_report: int = 10, params: Any = None,
            **conv_args: Any) -> Comparison:
    """Compare a custom kernel's uint8 output with the expected one, bit for bit.

    ``actual`` / ``expected``: numpy uint8 arrays or torch uint8 / quint8 tensors, (N, O, OH, OW)
    (``layout="NHWC"`` when ``actual`` is (N, OH, OW, O); ``expected`` is always NCHW, as torch's).
    Conv arguments (the names of ``qref.conv2d``:
    input, weight, bias, stride, padding, dilation, groups, input_scale, input_zero_point,
    weight_scale, weight_zero_point, output_scale, output_zero_point, relu, isa), or
    ``params=`` a ``qref.Conv2dParams`` plus ``input=``, make qref compute ``expected`` when it is
    None, add qref's int32/float stages to the first mismatches, and diagnose a mismatch.
    """
    fn = "compare"
    unknown = sorted(set(conv_args) - set(V.CONV_ARGS))
    if unknown:
        raise TypeError(f"compare: unexpected argument(s) {unknown} (conv arguments: {', '.join(V.CONV_ARGS)})")
    check_choice(fn, "layout", layout, ("NCHW", "NHWC"))
    max_report = check_int(fn, "max_report", max_report, 0, None, "must be an int >= 0")
    a = _as_uint8(fn, "actual", actual, layout)
    have_conv = params is not None or any(k in conv_args for k in ("input", "weight"))
    case = V.make_case(fn, params=params, **conv_args) if have_conv else None
    notes = []
    stages = None
    if case is not None:
        q, inter = conv2d(**case.conv_kwargs(), return_intermediates=True)
        stages = inter
    if expected is None:
        if case is None:
            raise ValueError("compare: expected is None and no conv arguments were given (give expected, or the "
                             "conv arguments so qref computes it)")
        e = q
        source = f"qref, isa={case.isa!r} ({case.path} path, "
        source += "int16-saturating pairs)" if case.saturates else "exact products)"
    else:
        e = _as_uint8(fn, "expected", expected, "NCHW")
        source = "given"
        if case is not None and q.shape == e.shape and not np.array_equal(q, e):
            n = int(np.count_nonzero(q != e))
            notes.append(f"the given expected output differs from qref's (isa={case.isa!r}) in {n} elements; "
                         f"the diagnosis is relative to the given expected output")
    if a.shape != e.shape:
        hint = ""
        if a.ndim == 4 and a.transpose(0, 2, 3, 1).shape == e.shape or e.transpose(0, 2, 3, 1).shape == a.shape:
            hint = " (NHWC vs NCHW? pass layout='NHWC' for (N, OH, OW, O) arrays)"
        raise ValueError(f"compare: actual has shape {a.shape} but expected has shape {e.shape}{hint}")
    mis = a != e
    n_mis = int(np.count_nonzero(mis))
    diff = np.abs(a.astype(np.int16) - e.astype(np.int16))
    first = []
    for idx in np.argwhere(mis)[:max_report]:
        t = tuple(int(v) for v in idx)
        if stages is not None:
            first.append(Mismatch(t, int(a[t]), int(e[t]), int(stages.acc[t]), int(stages.raw[t]),
                                  float(stages.y[t])))
        else:
            first.append(Mismatch(t, int(a[t]), int(e[t])))
    diagnosis = None
    if case is not None and n_mis:
        diagnosis = diagnose(case, a, e)
    # Equal bytes under different quantization parameters are different values: a quint8 actual's
    # own (scale, zero point) must be the expected output's.
    qp_ok = True
    a_qp = _qparams(actual)
    e_qp = _qparams(expected) if expected is not None else (
        (float(case.conv_kwargs()["output_scale"]), int(case.conv_kwargs()["output_zero_point"])) if case else None)
    if a_qp is not None and e_qp is not None and a_qp != e_qp:
        qp_ok = False
        notes.append(f"actual is quantized with scale={a_qp[0]!r}, zero_point={a_qp[1]} but expected with "
                     f"scale={e_qp[0]!r}, zero_point={e_qp[1]}: equal bytes are different values, so not ok")
    return Comparison(ok=n_mis == 0 and qp_ok, mismatches=n_mis, numel=int(a.size), max_abs_diff=int(diff.max(initial=0)),
                      first=first, diagnosis=diagnosis, expected_source=source, notes=notes)
