"""The report of ``qref.check`` on a PT2E model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..common.records import find_named

OK, MISMATCH, NOT_VERIFIED, FP32 = "OK", "MISMATCH", "NOT VERIFIED", "FP32 SIMULATION"


@dataclass
class Row:
    name: str
    kind: str                 # int8 op, "quantize", "dequantize", "end to end", float op
    status: str               # OK / MISMATCH / NOT VERIFIED / FP32 SIMULATION
    mismatches: int = 0
    elements: int = 0
    detail: str = ""
    max_abs_diff: Optional[float] = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Pt2eReport:
    """``rows``: one per int8 op / quantize / dequantize / float op of the program, plus the end-to-end
    row. ``ok`` only when every row is verified (FP32 SIMULATION rows of an uncompiled model say
    that a layer is float there: nothing int8 to verify) and nothing mismatched."""

    compiled: bool
    isa: str
    rows: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.status in (OK, FP32) for r in self.rows)

    @property
    def mismatching(self) -> list:
        return [r for r in self.rows if r.status == MISMATCH]

    @property
    def not_verified(self) -> list:
        return [r for r in self.rows if r.status == NOT_VERIFIED]

    def __getitem__(self, name: str) -> Row:
        return find_named(self.rows, name)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "compiled": self.compiled, "isa": self.isa, "rows": [r.to_dict() for r in self.rows]}

    def __str__(self) -> str:
        head = (f"qref check (PT2E, {'torch.compile int8 program' if self.compiled else 'converted q/dq graph'}"
                f", isa={self.isa}): {'OK' if self.ok else 'NOT OK'}")
        lines = [head]
        w = max([len(r.name) for r in self.rows] + [4])
        for r in self.rows:
            cnt = f"{r.mismatches}/{r.elements}" if r.elements else ""
            lines.append(f"  {r.name:<{w}}  {r.status:<15} {cnt:>13}  {r.detail}")
        return "\n".join(lines)
