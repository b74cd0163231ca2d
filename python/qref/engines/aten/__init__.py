"""qref.engines.aten: ATen's own quantized CPU kernels (the non-conv ops of converted eager and
FX models), bit for bit. See docs/ops.md."""

from ._args import QTensor
from ._ops import (
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    add,
    add_relu,
    add_scalar,
    avg_pool2d,
    avg_pool3d,
    cat,
    clamp,
    dequantize,
    hardsigmoid,
    hardswish,
    hardtanh,
    leaky_relu,
    max_pool1d,
    max_pool2d,
    mean,
    mul,
    mul_relu,
    quantize_per_channel,
    quantize_per_tensor,
    relu6,
    threshold,
    upsample_bilinear2d,
    upsample_nearest2d,
)

__all__ = [
    "QTensor", "quantize_per_tensor", "quantize_per_channel", "dequantize", "add", "add_relu", "mul", "mul_relu",
    "add_scalar", "hardswish", "hardsigmoid", "leaky_relu", "threshold", "clamp", "hardtanh", "relu6", "cat",
    "max_pool2d", "max_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "mean",
    "upsample_nearest2d", "upsample_bilinear2d",
]
