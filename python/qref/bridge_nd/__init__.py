"""``qref.bridge_nd``: the documented params classes of Linear, Conv1d, Conv3d and the transposed
convs (docs/layers.md, benchmarks/bench_layers.py). A façade: the code lives in qref.bridge.layers."""

from ..bridge.layers import (
    MODULE_KINDS,
    Conv1dParams,
    Conv3dParams,
    ConvTransposeParams,
    LinearParams,
    from_torch_nd,
    handles,
    packed_engine_nd,
)

__all__ = [
    "MODULE_KINDS",
    "Conv1dParams",
    "Conv3dParams",
    "ConvTransposeParams",
    "LinearParams",
    "from_torch_nd",
    "handles",
    "packed_engine_nd",
]
