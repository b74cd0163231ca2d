"""qref.engines.aten: ATen's own quantized CPU kernels (the non-conv ops of converted eager and
FX models), bit for bit. See docs/ops.md."""

from ._args import QTensor  # noqa: F401
from ._ops import *  # noqa: F403 - the ops, listed once in _ops.__all__
from ._ops import __all__ as __all__
