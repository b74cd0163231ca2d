"""qref.known_torch_defect: where torch's own output is wrong (and qref's is the correct value)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..engines.fbgemm.conv_nd import conv_nd_plan
from ..engines.onednn.conv2d import transposed_defect
from ..routing import x86_picks_onednn


def known_torch_defect(params: Any, input_shape: Any, *, first_input_shape: Any = None,
                       input_zero_point: Optional[int] = None, isa: str = "auto") -> Optional[str]:
    """Why torch's fbgemm output is wrong for this layer and input, or None.

    ``params``: a params object from ``qref.from_torch`` (any layer kind). ``input_shape``: the
    torch input's shape (N, C, ...). Where this returns a reason, qref's default output is the
    mathematically correct one and torch's differs from it (``qref.check`` should report "torch is
    wrong here" with this reason instead of a qref mismatch):

    - conv3d on fbgemm's depthwise 3D path with an input dimension smaller than its padding: the
      kernel reads out of bounds (torch usually segfaults).
    - conv3d on fbgemm's depthwise 3D path with a weight zero point != 0 whose receptive field can
      sum past 32767 (more than 128 taps, e.g. 7x7x7): the kernel accumulates the activation row
      sum with saturating int16 adds (vpaddsw; docs/numerics.md §4.2). Deterministic: qref reproduces it with
      ``reproduce_defects=True`` (a data-dependent check: compare torch with that).
    - conv_transpose2d on fbgemm's direct path (docs/numerics.md §4.5): N > 1 (only image 0 is computed;
      the others are uninitialized memory, not reproducible); stride_h == 2 (rows placed as if
      stride_h were 1; reproduced with ``reproduce_defects=True``); an input size different from the
      module's first call with an input zero point != 0 (column offsets cached from the first call;
      only detectable when ``first_input_shape`` is given).
    """
    kind = getattr(params, "kind", "")
    shape = tuple(int(v) for v in input_shape)
    eng = getattr(params, "engine", "fbgemm")
    if kind == "conv_transpose" and eng != "fbgemm":
        if eng == "onednn" or x86_picks_onednn(params.groups, isa, tuple(params.output_padding)):
            # torch's x86/onednn deconvolution with in_channels != out_channels (docs/numerics.md §6.5)
            IC, OCg = params.weight.shape[:2]
            return transposed_defect(int(IC), int(OCg) * int(params.groups), int(params.groups))
    if kind == "conv3d" and eng != "fbgemm":
        return None  # the fbgemm defects below are not oneDNN's
    if kind == "conv3d":
        plan = params.plan(shape, isa)
        taps = int(np.prod(params.weight.shape[2:]))
        pad = tuple(int(v) for v in params.padding) if params.padding_mode == "zeros" else (0, 0, 0)
        if plan.path == "depthwise" and any(n < p for n, p in zip(shape[2:], pad)):
            return (f"fbgemm's depthwise 3D kernel reads out of bounds when an input dimension is smaller than its "
                    f"padding (input {shape[2:]}, padding {pad}): torch usually crashes (SIGSEGV) and otherwise "
                    f"computes from unrelated memory (E: tests/test_conv_nd.py); qref computes the correct value")
        if plan.path == "depthwise" and bool(np.any(params.weight_zero_point != 0)) and taps * 255 > 32767:
            kd, kh, kw = params.weight.shape[2:]
            return (f"fbgemm's depthwise 3D kernel ({kd}x{kh}x{kw}, {taps} taps) sums each receptive field's "
                    f"activations with saturating int16 adds (vpaddsw), so sums above 32767 are clipped, and the "
                    f"weight zero point != 0 multiplies that wrong row sum into the output (docs/numerics.md §4.2); qref "
                    f"computes the correct value (reproduce_defects=True gives torch's)")
        return None
    if kind == "conv_transpose" and params.weight.ndim == 4:
        IC, OCg = params.weight.shape[:2]
        g = params.groups
        plan = conv_nd_plan(shape, (OCg * g, IC // g) + tuple(params.weight.shape[2:]), params.stride,
                            params.padding, params.dilation, g, transposed=True, isa=isa)
        if plan.path != "direct":
            return None
        if shape[0] > 1:
            return (f"fbgemm's direct transposed conv computes image 0 only (no batch loop, thread 0 only): images "
                    f"1..{shape[0] - 1} of the N={shape[0]} output are uninitialized memory (docs/numerics.md §4.5); qref "
                    f"computes every image correctly")
        if params.stride[0] == 2:
            return ("fbgemm's direct transposed conv places input row j's contributions at output rows j + kh "
                    "instead of 2j + kh when stride_h == 2 (its host loop and row sums assume stride_h == 1; "
                    "docs/numerics.md §4.5); qref computes the correct value (reproduce_defects=True gives torch's)")
        if first_input_shape is not None and tuple(int(v) for v in first_input_shape) != shape and \
                (input_zero_point is None or input_zero_point != 0):
            return (f"fbgemm's direct transposed conv caches its per-position column offsets on the module's first "
                    f"call (input {tuple(first_input_shape)}); with input {shape} and an input zero point != 0 they "
                    f"are wrong (docs/numerics.md §4.5); qref computes the correct value")
    return None
