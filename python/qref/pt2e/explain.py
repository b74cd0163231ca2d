"""Why the uncompiled converted model and the compiled int8 one differ, for one output element of
a quantized conv / linear (docs/pt2e.md)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engines.onednn.kernel_names import is_amx_build
from .ops import chain, postops, run_op

f32 = np.float32


def explain_pt2e(op: Any, index: tuple) -> str:
    """Both derivations of output element ``index`` (torch's output indexing) of one int8 op
    (a ``qref.pt2e.Int8Op``, e.g. ``parse_call`` of a recorded call):

    compiled (oneDNN int8): A = sum((x - x_zp) * w) in int32, y = f32(f32(A * x_scale) * w_scale)
    (one combined scale on AVX2 JIT kernels) + bias, the post-ops in oneDNN's float arithmetic
    (gelu / swish: its approximations), then the output conversion;
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
    c = chain(op)
    shape = c.shape
    if op.kind.startswith("qconv"):
        pos = (idx[0],) + tuple(idx[2:])
        flat = np.ravel_multi_index(pos, (shape[0],) + tuple(shape[1:-1]))
    else:
        flat = np.ravel_multi_index(idx[:-1], shape[:-1]) if len(shape) > 1 else 0
    a = f32(c.A[flat, o])
    xs, ws = f32(op.x_scale), f32(op.w_scale[o])
    how_sum = "int32, each pair of channels saturating to int16" if c.impl == "avx2" else "exact int32"
    if op.kernel:  # a qlinear on an AMX host: the build oneDNN's log named
        how_sum += (", the zero point compensated in float" if is_amx_build(op.kernel) else "") + \
            f"; oneDNN ran {op.kernel}"
    lines.append(f"  compiled:   A = sum((x - {op.x_zp}) * w) = {int(a)} ({how_sum})")
    if c.combined:
        s2 = f32(a * f32(xs * ws))
        lines.append(f"              f32(A * f32(x_scale {xs:.9g} * w_scale[{o}] {ws:.9g})) = {s2:.9g}")
    else:
        s1 = f32(a * xs)
        s2 = f32(s1 * ws)
        lines.append(f"              f32(A * x_scale {xs:.9g}) = {s1:.9g}; * w_scale[{o}] {ws:.9g} = {s2:.9g}")
    if op.bias is not None:
        lines.append(f"              + bias {op.bias[o]:.9g} = {f32(s2 + f32(op.bias[o])):.9g}")
    y = postops(op, c, "float32", slice(flat, flat + 1), slice(o, o + 1))[0, 0]
    how = {"avx512": "oneDNN's AVX-512 JIT kernels", "avx2": "oneDNN's AVX2 JIT kernels"}.get(
        c.impl, "oneDNN's reference primitive")
    post = op.eltwise + (f"({op.algorithm})" if op.algorithm else "")
    lines.append(f"              post-ops {op.binary}/{post} as {how} compute them = {y:.9g}")
    lines.append(f"              output {op.output_dtype}: {mine[idx].item()!r}")
    lines.append("  the two differ because the int8 op sums exact integers and scales once, while the "
                 "q/dq graph scales every element first and sums in float32")
    return "\n".join(lines)
