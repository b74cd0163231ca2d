"""torch's QNNPACK engine (``torch.backends.quantized.engine = "qnnpack"``): conv2d, linear, add
and the lookup-table ops, computed by ``qref._core.qnnpack_*`` (csrc/qref/qnnpack/)."""

from .ops import (  # noqa: F401
    LUT_KINDS,
    QnnpackIntermediates,
    add,
    add_params,
    conv2d,
    linear,
    lut_op,
    lut_table,
)
