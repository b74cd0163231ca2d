// qref: the conv2d shape and problem structs. Forwarding header: the definitions
// live in qref/gemm/conv2d.h; this path is kept for users of the installed headers.
#pragma once

#include "qref/gemm/conv2d.h"
