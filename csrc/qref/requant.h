// qref: fbgemm's requantization (the normative formula). Forwarding header: the
// definitions live in qref/fbgemm/requant.h; this path is kept for users of the
// installed headers (docs/custom-kernels.md).
#pragma once

#include "qref/fbgemm/requant.h"
