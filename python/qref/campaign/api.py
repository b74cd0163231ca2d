"""The qref functions a campaign uses, all of them public API, gathered in one place.

Imported from the modules that define them, not from the package root: the root imports this
subpackage, so importing it from here would close an import cycle.
"""

from ..check import check
from ..compare import compare
from ..conv import OneDNNNotSupportedError, conv2d, conv_plan, torch_isa

__all__ = ["OneDNNNotSupportedError", "check", "compare", "conv2d", "conv_plan", "torch_isa"]
