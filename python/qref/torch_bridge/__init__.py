"""``qref.torch_bridge``: the documented names of the torch bridge (docs/check.md). A façade: the
code lives in qref.bridge (modules: Conv2dParams and the module readers; from_torch)."""

from ..bridge.from_torch import from_torch
from ..bridge.modules import (
    Conv2dParams,
    UnsupportedModuleError,
    freeze_arrays,
    module_engine,
    packed_engine,
    weight_qparams,
)

__all__ = [
    "Conv2dParams",
    "UnsupportedModuleError",
    "freeze_arrays",
    "from_torch",
    "module_engine",
    "packed_engine",
    "weight_qparams",
]
