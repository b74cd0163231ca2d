// qref::aten -- vectorized bodies of ATen's elementwise quantized kernels. Each
// function computes, lane by lane, exactly the float operations of the scalar
// reference in aten_ref.h (same order, the same explicit fma, no other
// contraction), so it writes the same bytes; it only runs faster. Generic code
// (aten_ops.cc) calls these only after checking the CPU at run time
// (avx2_kernel_usable(), common/cpu.cc), and runs the scalar tails itself.
// Plain C-like interface: no standard-library templates cross into the ISA
// translation units.
#pragma once

#include <cstdint>

namespace qref {
namespace aten {

// The SIMD body of qadd_kernel<relu> (QuantizedOpKernels.cpp) over elements
// [0, n) of a, b, out, n a multiple of 32. fma_body: the AVX2/AVX512 body
// (dequantize = fma(scale, q, premul), QuantizeAvx2 lanes with inverse
// `inv`); otherwise the DEFAULT body (scale * (q - zp), fbgemm's legacy
// quantize: nearest-even of fma(x, inv, zp)). s8: qint8, else quint8.
struct AddBodyArgs {
  float sa, sb, pa, pb, inv;
  int32_t za, zb, zo;
  bool relu, fma_body, s8;
};
#ifdef QREF_HAVE_AVX2_KERNEL
void add_body_avx2(const AddBodyArgs& args, const void* a, const void* b, int64_t n, void* out);
#endif

}  // namespace aten
}  // namespace qref
