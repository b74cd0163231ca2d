"""torchao PT2E models (X86InductorQuantizer) as ``torch.compile`` runs them: lowering with freezing,
the oneDNN int8 ops of the compiled program, inductor's quantize / dequantize (docs/pt2e.md).

torch and torchao are imported inside the functions only: ``import qref`` needs numpy alone."""

from __future__ import annotations

from .api import check, check_compiled, check_converted, is_pt2e_model, run, run_compiled
from .explain import explain_pt2e
from .ops import Int8Op, NotReproduced
from .report import Pt2eReport, Row

__all__ = ["check", "check_compiled", "check_converted", "run", "run_compiled", "is_pt2e_model", "explain_pt2e",
           "Int8Op", "NotReproduced", "Pt2eReport", "Row"]
