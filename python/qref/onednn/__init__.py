"""``qref.onednn``: the documented names of torch's oneDNN arithmetic (docs/onednn.md).

A façade: the code lives in qref.engines.onednn.conv2d (plans, prepared convs), qref.common.onednn_isa
(oneDNN's CPU class), qref.routing (torch's x86 routing) and qref.layers.conv_nd (conv_transpose2d).
"""

from ..common.onednn_isa import (
    _ORDER,
    ONEDNN_ISAS,
    OnednnIsa,
    describe_class,
    host_class,
    onednn_isa,
    resolve_class,
)
from ..engines.onednn.conv2d import (
    _WARNED,
    OnednnIntermediates,
    OnednnPlan,
    plan,
    prepare,
    prepare_conv2d,
    run,
    scales,
    transposed_defect,
)
from ..layers.conv_nd import onednn_conv_transpose2d as conv_transpose2d
from ..routing import fbgemm_isa, host_has_vnni

__all__ = [
    "_ORDER",
    "_WARNED",
    "ONEDNN_ISAS",
    "OnednnIntermediates",
    "OnednnIsa",
    "OnednnPlan",
    "conv_transpose2d",
    "describe_class",
    "fbgemm_isa",
    "host_class",
    "host_has_vnni",
    "onednn_isa",
    "plan",
    "prepare",
    "prepare_conv2d",
    "resolve_class",
    "run",
    "scales",
    "transposed_defect",
]
