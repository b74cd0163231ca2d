// qref: the output stage of the exact int8 GEMM/conv driver, a parameter of every run (as
// FBGEMM's output-pipeline objects, ReQuantizeOutput & co., are of its GEMM): what turns one
// output element's int32 sums into uint8.
//   fbgemm: fbgemm's requantization (fbgemm/requant.h) with the problem's Requant constants;
//   onednn: oneDNN's requantization (onednn/requant.h) with the per-channel scale and bias
//     arrays below. With symmetric weights (w_zp = 0, which oneDNN requires) the exact
//     GEMM's raw = acc - a_zp * colsum (padded taps filled with a_zp) equals oneDNN's
//     wrap32(acc_real - a_zp * colsum_real) (ring identity mod 2^32; a padded tap adds
//     (a_zp - a_zp) * w = 0), so only the float steps after it differ. Exact (non-saturating)
//     problems only; the arrays have O entries and must outlive every run (the owner keeps
//     them: OnednnConv2d in onednn/onednn.cc).
// A kernel says which kinds it implements (KernelEntry::onednn_epilogue, common/kernels.h).
// Plain data: kernel translation units compiled with ISA flags read it.
#pragma once

#include "qref/onednn/requant.h"

namespace qref {

struct Conv2dEpilogue {
  enum class Kind { fbgemm, onednn };
  Kind kind = Kind::fbgemm;
  OnednnRequant onednn;          // kind == onednn (a_zp is the problem's input zero point)
  const float* scale = nullptr;  // [O]: f32(ss * ws[o]) if onednn.combined, else ws[o]
  const float* bias = nullptr;   // [O] or null
};

}  // namespace qref
