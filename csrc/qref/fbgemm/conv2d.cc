// qref: fbgemm's conv2d: which path a shape takes and the requantization set-up.
#include "qref/fbgemm/conv_nd.h"
#include "qref/fbgemm/paths.h"
#include "qref/fbgemm/requant.h"
#include "qref/fbgemm/conv2d.h"
#include "qref/gemm/api.h"

namespace qref {

const char* path_name(ConvPath p) {
  switch (p) {
    case ConvPath::depthwise: return "depthwise";
    case ConvPath::groupwise: return "groupwise";
    case ConvPath::pointwise: return "pointwise";
    case ConvPath::im2col: return "im2col";
  }
  return "?";
}

// FbgemmConv.cc ConvFastPath for conv_param_t<2>: the N-d rule (conv_nd.h
// fbgemm_conv_nd_path) with D = 1, so 2D, 3D, transposed and reference.h share
// one implementation. A non-transposed conv never takes the direct path.
ConvPath fbgemm_conv_path(const Conv2dShape& s, bool avx512_host) {
  switch (fbgemm_conv_nd_path(conv_nd_shape_2d(s), avx512_host)) {
    case ConvNdPath::depthwise: return ConvPath::depthwise;
    case ConvNdPath::groupwise: return ConvPath::groupwise;
    case ConvNdPath::pointwise: return ConvPath::pointwise;
    case ConvNdPath::direct:
    case ConvNdPath::im2col: break;
  }
  return ConvPath::im2col;
}

bool path_saturates(ConvPath p, const IsaSemantics& isa) {
  switch (p) {
    case ConvPath::depthwise: return true;
    case ConvPath::groupwise: return isa.groupwise_saturates;
    case ConvPath::pointwise:
    case ConvPath::im2col: return isa.gemm_saturates;
  }
  return true;
}

// docs/numerics.md §2.1: the doubles are narrowed to float inside make_requant (requant.h).
Requant prepare_requant(const Conv2dShape& s, const int8_t* w, const RequantArgs& a) {
  return make_requant(s.O, s.K(), w, a);
}

}  // namespace qref
