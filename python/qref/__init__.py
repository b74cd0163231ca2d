"""qref: PyTorch's quantized int8 convolution (fbgemm), bit for bit, at native speed.

``import qref`` needs numpy only; torch is imported by the torch bridge when used.

The package is layered (docs/architecture.md; pyproject.toml ``[tool.importlinter]`` checks it):
qref.common -> qref.routing -> qref.engines -> qref.layers -> qref.bridge -> the tools (check,
explain, compare, export, ...); this module re-exports the public names.
"""

# documented module paths kept as façades over the layers (qref.onednn.plan, qref.torch_bridge...)
from . import bridge_nd, onednn, onednn_nd, torch_bridge  # noqa: F401
from ._paths import get_cmake_dir, get_include
from ._version import __version__ as __version__
from .bridge.from_torch import from_torch
from .bridge.layers import Conv1dParams, Conv3dParams, ConvTransposeParams, LinearParams
from .bridge.modules import Conv2dParams
from .check import PortabilityReport, Report, check, portability
from .common.errors import OneDNNNotSupportedError, UnsupportedOpError
from .common.isa import IsaSemantics, TorchIsa, torch_isa
from .common.kernels import kernels
from .compare import Comparison, compare
from .engines.fbgemm.conv2d import ConvPlan, Intermediates, conv_plan
from .engines.fbgemm.conv_nd import conv_nd_plan
from .engines.fbgemm.linear import linear_plan
from .explain import Explanation, explain
from .export import GoldenCase, export, load_case
from .layers.conv2d import conv2d, quantize
from .layers.conv_nd import conv1d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d
from .layers.defects import known_torch_defect
from .layers.linear import linear
from .models import mode, run

__all__ = [
    "Comparison",
    "Conv1dParams",
    "Conv2dParams",
    "Conv3dParams",
    "ConvPlan",
    "ConvTransposeParams",
    "Explanation",
    "GoldenCase",
    "Intermediates",
    "IsaSemantics",
    "LinearParams",
    "OneDNNNotSupportedError",
    "PortabilityReport",
    "Report",
    "TorchIsa",
    "UnsupportedOpError",
    "check",
    "compare",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_nd_plan",
    "conv_plan",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "explain",
    "export",
    "from_torch",
    "get_cmake_dir",
    "get_include",
    "kernels",
    "known_torch_defect",
    "linear",
    "linear_plan",
    "load_case",
    "mode",
    "portability",
    "quantize",
    "run",
    "torch_isa",
]

# Campaigns (fuzzing a custom kernel, checking a dataset; in process, worker processes or Ray)
from .campaign import DatasetReport, FuzzReport, check_dataset, fuzz  # noqa: E402

__all__ += ["DatasetReport", "FuzzReport", "check_dataset", "fuzz"]

# ATen's elementwise ops and the dynamic Linear, explained element by element
from .explain import OpExplanation, explain_op, explain_reduction  # noqa: E402

__all__ += ["OpExplanation", "explain_op", "explain_reduction"]
# --- which bytes each runtime gives (qref.runtimes)
from .runtimes import RuntimeReport, runtimes  # noqa: E402

__all__ += ["RuntimeReport", "runtimes"]
