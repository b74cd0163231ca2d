// qref: the kernel taps of one output pixel: as pointers into an NHWC uint8 image (the depthwise
// kernels of both engines gather them per pixel), or visited in order where they fall inside the
// image (kernels and reference loops that skip the padding).
#pragma once

#include <cstdint>

namespace qref {

// taps[kh * KW + kw] = the C-channel pixel that tap (kh, kw) of output pixel (n, oh, ow) reads,
// or `pad` (a row of activation zero points) where the tap falls in the padding. `g` is any
// geometry with H, W, C, KH, KW, stride_h/w, pad_h/w, dilation_h/w (fbgemm's Conv2dShape,
// oneDNN's OnednnSimdProblem).
// `static`: every ISA translation unit compiles and keeps its own copy, so the linker never
// hands an AVX-512 build of it to the AVX2 kernel.
template <class Geometry>
static inline void pixel_taps(const Geometry& g, const uint8_t* in, int64_t n, int64_t oh, int64_t ow,
                              const uint8_t* pad, const uint8_t** taps) {
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
    const bool row_in = ih >= 0 && ih < g.H;
    const uint8_t* row = in + (n * g.H + (row_in ? ih : 0)) * g.W * g.C;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = ow * g.stride_w - g.pad_w + kw * g.dilation_w;
      taps[kh * g.KW + kw] = row_in && iw >= 0 && iw < g.W ? row + iw * g.C : pad;
    }
  }
}

// Calls f(kh, kw, ih, iw) for each tap (kh, kw) of output pixel (oh, ow) whose input row ih and
// column iw lie inside the image, kh-major then kw, skipping the taps in the padding. `g` as for
// pixel_taps.
template <class Geometry, class F>
static inline void for_each_inner_tap(const Geometry& g, int64_t oh, int64_t ow, F&& f) {
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dilation_h;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = ow * g.stride_w - g.pad_w + kw * g.dilation_w;
      if (iw < 0 || iw >= g.W) continue;
      f(kh, kw, ih, iw);
    }
  }
}

}  // namespace qref
