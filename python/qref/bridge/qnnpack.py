"""Which quantized modules torch packed for QNNPACK.

torch packs a module's weights for the engine current at prepack time (``conv_prepack`` /
``linear_prepack`` dispatch on ``torch.backends.quantized.engine``), and the packed object
(``Conv2dPackedParamsBase`` / ``LinearPackedParamsBase``) is the same TorchBind class for every
engine. What tells QNNPACK's apart is how its ``apply`` refuses a bad input, before it touches any
state: a conv given one input channel too many answers "Input channel size of weight and bias must
match." (fbgemm and oneDNN word it differently), and a linear given a qint8 input answers
"quantized::linear (qnnpack): Expected input data type QUInt8". (A probe through QNNPACK's
requantization-scale check would also tell, but it leaves the packed op's cached state changed:
the module's next outputs differ; tests/test_qnnpack.py checks that this probe leaves none.)
"""

from __future__ import annotations

from typing import Any

_CONV_MESSAGE = "Input channel size of weight and bias must match"
_LINEAR_MESSAGE = "(qnnpack)"


def packed_by_qnnpack(module: Any) -> bool:
    """True when ``module``'s packed weights run QNNPACK (converted under engine "qnnpack")."""
    import torch

    pp = getattr(module, "_packed_params", None)
    if pp is None:
        return False
    if hasattr(module, "in_features"):
        pp = getattr(pp, "_packed_params", pp)
        qx = torch._make_per_tensor_quantized_tensor(torch.zeros((1, int(module.in_features)), dtype=torch.int8),
                                                     1.0, 0)
        op, message = torch.ops.quantized.linear, _LINEAR_MESSAGE
    else:
        ks = tuple(int(v) for v in module.kernel_size)
        dl = tuple(int(v) for v in module.dilation)
        transposed = bool(getattr(module, "transposed", False))
        spatial = tuple(max(8, d * (k - 1) + 1) for k, d in zip(ks, dl))
        data = torch.zeros((1, int(module.in_channels) + 1) + spatial, dtype=torch.uint8)
        qx = torch._make_per_tensor_quantized_tensor(data, 1.0, 0)
        op = getattr(torch.ops.quantized, ("conv_transpose" if transposed else "conv") + f"{len(ks)}d")
        message = _CONV_MESSAGE
    try:
        op(qx, pp, 1.0, 0)
    except RuntimeError as e:
        return message in str(e)
    return False
