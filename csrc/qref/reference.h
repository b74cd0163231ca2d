// qref: a header-only reference conv2d for kernel authors' C++ tests.
//
// #include "qref/reference.h" (include dir: qref.get_include(), or the CMake
// target qref::headers from find_package(qref)) and call qref::ref::conv2d;
// no linking against qref is needed. It computes, byte for byte, what
// qref.conv2d and torch's fbgemm quantized::conv2d(_relu) compute:
//
//   - layouts: input uint8 NHWC, weight int8 OHWI ([O][KH][KW][C/groups]),
//     output uint8 NHWC (fbgemm's own layouts, docs/numerics.md §2.4);
//   - padded taps hold the activation zero point (fbgemm's im2col memset and
//     depthwise/groupwise a_zp registers, docs/numerics.md §4.1-§4.3);
//   - with `saturate`, consecutive pairs (2i, 2i+1) of the per-group reduction
//     order k = (kh*KW + kw)*Cg + c are summed and saturated to int16 first
//     (vpmaddubsw), an odd last element pairing with zero; this one rule covers
//     every fbgemm path (docs/numerics.md §0, §4.6); `saturates()` below says when
//     fbgemm does it;
//   - requantization exactly as requant.h (the normative formula, docs/numerics.md §5),
//     with the per-channel constants prepared as fbgemm prepares them (§2.1).
//
// This is the same plain loop as fbgemm/kernels/conv2d_scalar.cc (qref's normative
// scalar kernel), kept header-only so it can be used without the library;
// tests/test_headers.py checks that both give identical bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "qref/gemm/conv2d.h"
#include "qref/fbgemm/conv_nd.h"
#include "qref/fbgemm/requant.h"

namespace qref {
namespace ref {

// Whose fbgemm arithmetic: an AVX2 host (or AVX512 without VNNI), or an
// AVX512-VNNI host with FBGEMM_ENABLE_INSTRUCTIONS unset (qref isa="avx2" /
// isa="vnni").
enum class Isa { avx2, vnni };

// The user's quantization parameters. fbgemm narrows every scale to float32
// before using it (qconv.cpp GetQuantizationParams, docs/numerics.md §2.1), so float
// scales lose nothing.
struct ConvArgs {
  Conv2dShape shape;                           // N,C,H,W,O,KH,KW,stride,pad,dilation,groups
  float input_scale = 1.0f;
  int32_t input_zero_point = 0;                // [0, 255]
  const float* weight_scale = nullptr;         // 1 (per-tensor) or O (per-channel) values
  const int32_t* weight_zero_point = nullptr;  // same count; null means all 0
  bool per_channel = false;
  float output_scale = 1.0f;
  int32_t output_zero_point = 0;               // [0, 255]
  bool relu = false;                           // quantized::conv2d_relu
  const float* bias = nullptr;                 // O floats or null (torch's float32 bias)
  bool saturate = false;                       // int16 pairs; see saturates()
};

// fbgemm's path choice, reduced to the one fact that changes integers: do the
// pair sums saturate? (FbgemmConv.cc ConvFastPath; docs/numerics.md §3, §4.6.)
// Depthwise (G == C, O in {G, 2G}, G % 8 == 0, k 3/5/7 square, stride 1/2,
// "same" padding, no dilation) saturates on every CPU; groupwise and the GEMM
// paths (pointwise, im2col) saturate only without VNNI. The groupwise/GEMM
// distinction matters on a VNNI host only under FBGEMM_ENABLE_INSTRUCTIONS=AVX2
// (GEMM saturates, groupwise stays exact), which Isa does not model.
inline bool is_depthwise(const Conv2dShape& s) {
  return fbgemm_takes_depthwise(conv_nd_shape_2d(s));  // conv_nd.h: the rule qref's path choice uses
}
inline bool saturates(const Conv2dShape& s, Isa isa) { return is_depthwise(s) || isa == Isa::avx2; }

// Per-channel constants, rounded to float32 in fbgemm's order (docs/numerics.md §2.1,
// §5.1): requant.h make_requant, the same function qref.conv2d uses.
inline Requant prepare(const ConvArgs& a, const int8_t* w_ohwi) {
  return make_requant(a.shape.O, a.shape.K(), w_ohwi, a);
}

// The reference conv2d. `a.shape` needs N,C,H,W,O,KH,KW and the conv
// parameters; OH/OW are derived here. `out` has N*OH*OW*O bytes (NHWC).
// Optional per-element stages (NHWC, same count): acc = sum of products
// (saturated pairs where `saturate`), raw = after the zero-point terms,
// y = float32 pre-rounding value.
inline void conv2d(const ConvArgs& args, const uint8_t* in, const int8_t* w, uint8_t* out,
                   int32_t* acc_out = nullptr, int32_t* raw_out = nullptr, float* y_out = nullptr) {
  Conv2dShape s = args.shape;
  s.finalize();
  const Requant rq = prepare(args, w);
  const int64_t Og = s.cout_per_group(), K = s.K();
  const uint8_t a_zp = static_cast<uint8_t>(rq.input_zero_point);
  std::vector<uint8_t> a(static_cast<size_t>(K));
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t pos = (n * s.OH + oh) * s.OW + ow;
        for (int64_t g = 0; g < s.groups; ++g) {
          // receptive field in (kh, kw, c) order; padding = activation zero point
          const int64_t rowsum = receptive_field(s, in, n, oh, ow, g, a_zp, a.data());
          for (int64_t oc = 0; oc < Og; ++oc) {
            const int64_t o = g * Og + oc;
            const int32_t acc32 = pair_dot(a.data(), w + o * K, K, args.saturate);
            const int32_t raw = zero_point_terms(acc32, wrap32(rowsum), rq.input_zero_point, rq.col_offset[o],
                                                 rq.weight_zero_point[o]);
            const float y = requant_prerounding(raw, rq.has_bias, rq.bias_fma,
                                                rq.has_bias ? rq.bias_term[o] : 0.0f, rq.bias_rcp,
                                                rq.multiplier[o]);
            const int64_t i = pos * s.O + o;
            out[i] = requant_output(y, rq.output_zero_point, rq.relu);
            if (acc_out) acc_out[i] = acc32;
            if (raw_out) raw_out[i] = raw;
            if (y_out) y_out[i] = y;
          }
        }
      }
    }
  }
}

}  // namespace ref
}  // namespace qref
