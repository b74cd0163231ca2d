"""Why the uncompiled converted model and the compiled int8 one differ, for one output element of
a quantized conv / linear (docs/pt2e.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ops import compensated_sum, run_op

f32 = np.float32


def explain_pt2e(op: Any, index: tuple) -> str:
    """Both derivations of output element ``index`` (torch's output indexing) of one int8 op
    (a ``qref.pt2e.Int8Op``, e.g. ``parse_call`` of a recorded call):

    compiled (oneDNN int8): A = sum((x - x_zp) * w) exactly in int32, y = f32(f32(A * x_scale) *
    w_scale) + bias, post-ops, then the output conversion;
    uncompiled (q/dq graph): x and w dequantized to float32 one element at a time, an fp32
    convolution (its own summation order, rounding at every add), + bias, post-ops in float.
    """
    import torch
    import torch.nn.functional as F

    x = op.x.detach()
    xd = (x.float() - float(f32(op.x_zp))) * float(f32(op.x_scale))
    w = torch.from_numpy(op.weight.astype(np.float32)) * torch.from_numpy(op.w_scale).reshape(
        (-1,) + (1,) * (op.weight.ndim - 1))
    b = None if op.bias is None else torch.from_numpy(op.bias)
    if op.kind.startswith("qconv"):
        fn = F.conv1d if x.dim() == 3 else F.conv2d
        yf = fn(xd, w, b, op.stride, op.padding, op.dilation, op.groups)
    else:
        yf = F.linear(xd, w, b)
    mine = run_op(op)
    idx = tuple(index)
    o = idx[1] if op.kind.startswith("qconv") else idx[-1]
    lines = [f"element {idx} of {op.kind}:"]
    lines.append(f"  uncompiled: fp32 {op.kind[1:5]} of dequantized x and w = {float(yf[idx]):.9g} "
                 f"(float sums, rounding after each add)")
    A, shape, _ = compensated_sum(op, "auto")
    if op.kind.startswith("qconv"):
        pos = (idx[0],) + tuple(idx[2:])
        flat = np.ravel_multi_index(pos, (shape[0],) + tuple(shape[1:-1]))
    else:
        flat = np.ravel_multi_index(idx[:-1], shape[:-1]) if len(shape) > 1 else 0
    a = f32(A[flat, o])
    s1 = f32(a * f32(op.x_scale))
    s2 = f32(s1 * f32(op.w_scale[o]))
    lines.append(f"  compiled:   A = sum((x - {op.x_zp}) * w) = {int(a)} (exact int32)")
    lines.append(f"              f32(A * x_scale {f32(op.x_scale):.9g}) = {s1:.9g}; * w_scale[{o}] "
                 f"{op.w_scale[o]:.9g} = {s2:.9g}")
    if op.bias is not None:
        lines.append(f"              + bias {op.bias[o]:.9g} = {f32(s2 + f32(op.bias[o])):.9g}")
    lines.append(f"              post-ops {op.binary}/{op.eltwise}, output {op.output_dtype}: {mine[idx].item()!r}")
    lines.append("  the two differ because the int8 op sums exact integers and scales once, while the "
                 "q/dq graph scales every element first and sums in float32")
    return "\n".join(lines)
