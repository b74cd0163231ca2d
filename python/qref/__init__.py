"""qref: PyTorch's quantized int8 convolution (fbgemm), bit for bit, at native speed.

``import qref`` needs numpy only; torch is imported by the torch bridge when used.
"""

from ._isa import IsaSemantics, TorchIsa, torch_isa
from .conv import (
    ConvPlan,
    Intermediates,
    OneDNNNotSupportedError,
    conv2d,
    conv_plan,
    kernels,
    quantize,
)
from .torch_bridge import Conv2dParams, from_torch
from .explain import Explanation, explain  # issue 4
from .check import PortabilityReport, Report, check, portability  # issue 4
from .compare import Comparison, compare  # issue 5
from ._paths import get_cmake_dir, get_include  # issue 5
from .export import GoldenCase, export, load_case  # issue 5

__version__ = "0.1.0"

__all__ = [
    "Explanation",
    "PortabilityReport",
    "Report",
    "check",
    "explain",
    "portability",
    "Comparison",
    "compare",
    "get_cmake_dir",
    "get_include",
    "GoldenCase",
    "export",
    "load_case",
    "Conv2dParams",
    "ConvPlan",
    "Intermediates",
    "IsaSemantics",
    "OneDNNNotSupportedError",
    "TorchIsa",
    "conv2d",
    "conv_plan",
    "from_torch",
    "kernels",
    "quantize",
    "torch_isa",
]

# issue 7: linear, conv1d, conv3d, transposed convs
from .linear import linear, linear_plan  # noqa: E402
from .conv_nd import (  # noqa: E402
    conv1d,
    conv3d,
    conv_nd_plan,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    known_torch_defect,
)
from .bridge_nd import Conv1dParams, Conv3dParams, ConvTransposeParams, LinearParams  # noqa: E402

__all__ += [
    "Conv1dParams",
    "Conv3dParams",
    "ConvTransposeParams",
    "LinearParams",
    "conv1d",
    "conv3d",
    "conv_nd_plan",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "known_torch_defect",
    "linear",
    "linear_plan",
]

# Campaigns (fuzzing a custom kernel, checking a dataset; in process, worker processes or Ray)
from .campaign import DatasetReport, FuzzReport, check_dataset, fuzz  # noqa: E402

__all__ += ["DatasetReport", "FuzzReport", "check_dataset", "fuzz"]
