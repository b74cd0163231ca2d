"""The qref functions a campaign uses, all of them public API, gathered in one place.

Imported from the modules that define them, not from the package root: the root imports this
subpackage, so importing it from here would close an import cycle.
"""

from ..check import check
from ..common.errors import OneDNNNotSupportedError
from ..common.isa import torch_isa
from ..compare import compare
from ..engines.fbgemm.conv2d import conv_plan
from ..layers.conv2d import conv2d

__all__ = ["OneDNNNotSupportedError", "check", "compare", "conv2d", "conv_plan", "torch_isa"]
