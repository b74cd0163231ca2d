// qref: oneDNN's float approximations of gelu (erf and tanh forms), swish / logistic, tanh and
// exp, as its JIT eltwise injector computes them in a fused post-op (oneDNN v3.12, the version
// torch 2.13 bundles: src/cpu/x64/injectors/jit_uni_eltwise_injector.cpp, the *_compute_vector_fwd
// functions; docs/pt2e.md). Scalar C++, one IEEE float operation per vector instruction, in the
// kernel's order: std::fma where the kernel uses a fused multiply-add (vfmadd213ps / vfnmadd231ps),
// a separately rounded multiply and add elsewhere (the core is compiled with -ffp-contract=off,
// so the compiler fuses nothing). The tables are the injector's float bit patterns.
//
// Only gelu_erf depends on the kernel's vector ISA: AVX-512 kernels evaluate a piecewise
// minimax polynomial of |x| (onednn_gelu_erf_avx512), AVX2 kernels the Abramowitz-Stegun
// formula with exp and a true division (onednn_gelu_erf_avx2). exp, tanh, gelu_tanh, logistic
// and swish are the same sequence on both.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace qref {
namespace onednn_eltwise_detail {

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// vminps / vmaxps: the second operand when the comparison is false (NaN included).
inline float vmin(float a, float b) { return a < b ? a : b; }
inline float vmax(float a, float b) { return a > b ? a : b; }

constexpr uint32_t kSignMask = 0x80000000u;
constexpr uint32_t kAbsMask = 0x7fffffffu;

// exp: range reduction by ln 2, a degree-5 polynomial, 2^n built in the exponent bits.
constexpr uint32_t kLog2e = 0x3fb8aa3bu;
constexpr uint32_t kLn2 = 0x3f317218u;
constexpr uint32_t kLnFltMax = 0x42b17218u;
constexpr uint32_t kLnFltMin = 0xc2aeac50u;
constexpr uint32_t kExpPoly[5] = {0x3f7ffffbu, 0x3efffee3u, 0x3e2aad40u, 0x3d2b9d0du, 0x3c07cfceu};  // r^1..r^5

// tanh: 32 degree-6 polynomials, one per half binade of |x| from 2^-12 (index 0 and 31 unused).
constexpr uint32_t kTanhIdxBias = 0x39800000u;
constexpr uint32_t kTanhIdxMask = 0xffc00000u;
constexpr uint32_t kTanhLinearUbound = 0x39ddb3d7u;
constexpr uint32_t kTanhSaturationLbound = 0x41102cb3u;

// gelu_tanh: 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))).
constexpr uint32_t kGeluTanhFit = 0x3d372713u;
constexpr uint32_t kSqrtTwoOverPi = 0x3f4c422au;

// gelu_erf, AVX-512: erf(x / sqrt 2) as a degree-5 polynomial of |x| from one of 25 intervals
// (quarter binades from the index bias; 23 = saturation to 1, 24 = identity).
constexpr uint32_t kGeluErfIdxBias = 0xc21fffffu;
constexpr uint32_t kGeluErfRbound = 0x40b15ceeu;

// gelu_erf, AVX2: Abramowitz & Stegun 7.1.26, erf(z) = 1 - t P(t) exp(-z^2), t = 1 / (1 + p|z|).
constexpr uint32_t kAsP = 0x3ea7ba05u;
constexpr uint32_t kOneOverSqrtTwo = 0x3f3504f3u;
constexpr uint32_t kAsPoly[5] = {0x3e827906u, 0xbe91a98eu, 0x3fb5f0e3u, 0xbfba00e3u, 0x3f87dc22u};  // t^0..t^4

constexpr uint32_t kTanhPoly[7][32] = {
  {  // r^0
      0x00000000u, 0x39bfffffu, 0x39ffffffu, 0x3a3ffffeu, 0x3a7ffffbu, 0x3abffff7u, 0x3affffebu, 0x3b3fffdcu,
      0x3b7fffabu, 0x3bbfff70u, 0x3bfffeabu, 0x3c3ffdc0u, 0x3c7ffaabu, 0x3cbff701u, 0x3cffeaadu, 0x3d3fdc08u,
      0x3d7faacdu, 0x3dbf7081u, 0x3dfeacc9u, 0x3e3dc7fdu, 0x3e7acbf5u, 0x3eb77a9fu, 0x3eec9a9fu, 0x3f22991fu,
      0x3f42f7d6u, 0x3f67b7ccu, 0x3f76ca83u, 0x3f7ebbe9u, 0x3f7fd40cu, 0x3f7fff32u, 0x3f7ffffcu, 0x3f800000u,
  },
  {  // r^1
      0x3f800000u, 0x3f800018u, 0x3f7fffe8u, 0x3f7fffdau, 0x3f7fffdcu, 0x3f7fffdcu, 0x3f7fffacu, 0x3f7fff70u,
      0x3f7ffeecu, 0x3f7ffdc0u, 0x3f7ffbedu, 0x3f7ff704u, 0x3f7feff5u, 0x3f7fdbcau, 0x3f7fbfffu, 0x3f7f7041u,
      0x3f7f009bu, 0x3f7dc36cu, 0x3f7c0aa8u, 0x3f7734b8u, 0x3f70a4deu, 0x3f5f1fd8u, 0x3f495493u, 0x3f18b9ecu,
      0x3ed706cbu, 0x3e390b06u, 0x3d90b11fu, 0x3c21a053u, 0x3aaf7fdbu, 0x37ccc1a3u, 0x355c6733u, 0x00000000u,
  },
  {  // r^2
      0x00000000u, 0xbe4e0ff1u, 0x3d25b1b1u, 0x3d6b6dabu, 0x3c9fb1d5u, 0xbabff06fu, 0x3c07b3f6u, 0xbb3fc1bcu,
      0x3a9f5921u, 0xbbbf06f2u, 0xbbb0f402u, 0xbc47db9eu, 0xbc73d5e7u, 0xbca25bdau, 0xbcfca780u, 0xbd40e07cu,
      0xbd7dab03u, 0xbdbe4a0fu, 0xbdfb14a5u, 0xbe36cc8du, 0xbe6bd102u, 0xbe9fe7c5u, 0xbeba0f10u, 0xbec206a8u,
      0xbea3c388u, 0xbe277d62u, 0xbd8b7960u, 0xbc209f49u, 0xbaad44cau, 0xb7c6eeacu, 0xb663aa41u, 0x00000000u,
  },
  {  // r^3
      0x00000000u, 0x45b3ae96u, 0xc414eb20u, 0xc450e02eu, 0xc3152b4eu, 0xbead2f56u, 0xc2162e02u, 0xbeb4bd5au,
      0xc11a59a4u, 0xbed2f507u, 0xc020d32cu, 0x3dd0f506u, 0xbf2a75e2u, 0xbff950e3u, 0xbed47334u, 0xbe809b8cu,
      0xbeb64532u, 0xbe961a5bu, 0xbe9b63acu, 0xbea0d4b2u, 0xbe828a77u, 0xbe378612u, 0xbdc20908u, 0x3d2d3957u,
      0x3dd46e89u, 0x3db3f629u, 0x3d2c5e7bu, 0x3bd20403u, 0x3a59dfaeu, 0x3770af45u, 0x372cc014u, 0x00000000u,
  },
  {  // r^4
      0x00000000u, 0xcc981a1bu, 0x4a7edd3du, 0x4ab1007cu, 0x48fedd9cu, 0x41a557b5u, 0x477ee32au, 0x422557f5u,
      0x45ff3ce4u, 0x42a55641u, 0x446e0867u, 0xc33dc19au, 0x42915214u, 0x43af4fadu, 0x4110fe88u, 0xc1099b75u,
      0x3fc8a8dcu, 0xbfbeaef5u, 0xbe365aadu, 0x3f4d9652u, 0x3ddfa08fu, 0x3e34e9b8u, 0x3e2d07a6u, 0x3dc63567u,
      0x3cdaeb78u, 0xbcd17537u, 0xbc92829cu, 0xbb43ab99u, 0xb9b471ddu, 0xb6baad5au, 0xb78bafc7u, 0x00000000u,
  },
  {  // r^5
      0x00000000u, 0x52f688d5u, 0xd0505c72u, 0xd08f98e3u, 0xce505cc9u, 0xc7162b8au, 0xcc5061d6u, 0xc7162bdfu,
      0xca50b37fu, 0xc7162a3au, 0xc8422086u, 0x471a714eu, 0xc5ece1f1u, 0xc70e3d90u, 0xc3eba94au, 0x43e0c424u,
      0xc21f4552u, 0x42217cc8u, 0x405e7dc4u, 0xc10dd401u, 0x3e96b602u, 0xbd1a6d2fu, 0xbd393883u, 0xbd674682u,
      0xbd310016u, 0xb961e269u, 0x3ba32495u, 0x3a7680d5u, 0x38b3173cu, 0x35a9deeau, 0x375c3f2au, 0x00000000u,
  },
  {  // r^6
      0x00000000u, 0xd8995ed1u, 0x558285eau, 0x55b2cd69u, 0x53028625u, 0x4bc9991fu, 0x5082898au, 0x4b4999b3u,
      0x4e02c07cu, 0x4ac99764u, 0x4b72c822u, 0xca40c0e1u, 0x489413e4u, 0x49b12224u, 0x46134c4eu, 0xc60c2d57u,
      0x43c83910u, 0xc3c872d1u, 0xc186bc9eu, 0x42325bc3u, 0xbf2ffa4au, 0x3d9a203cu, 0xbc545a43u, 0xbae08feeu,
      0x3c80225du, 0x3b1fd1dfu, 0xba36b9d1u, 0xb91de544u, 0xb71f100fu, 0xb408e2edu, 0xb685fec8u, 0x00000000u,
  },
};
constexpr uint32_t kGeluErfPoly[6][32] = {
  {  // |x|^0
      0xa6f2cb94u, 0x32827792u, 0x3381cc0cu, 0x34523d4au, 0x351ac44du, 0x35f36d88u, 0x36ee8229u, 0x37b8a3bbu,
      0x3867a213u, 0x3940033bu, 0x3a2a5a1du, 0x3ae35863u, 0x3b7828f2u, 0x3c08b14bu, 0x3c515ed3u, 0xbb503236u,
      0xbd8d8e5eu, 0xbe8abcd9u, 0xbf0c19a2u, 0xbeccb328u, 0x3e176cedu, 0x3f470d99u, 0x3f7abb28u, 0x3f800000u,
      0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u,
  },
  {  // |x|^1
      0x3f4c422au, 0x3f4c421fu, 0x3f4c4207u, 0x3f4c41cbu, 0x3f4c413bu, 0x3f4c3fadu, 0x3f4c3a2fu, 0x3f4c2d40u,
      0x3f4c146au, 0x3f4bc341u, 0x3f4ad08cu, 0x3f48f8cfu, 0x3f45fac7u, 0x3f404e07u, 0x3f3b980fu, 0x3f48dff3u,
      0x3f78b21bu, 0x3fbb0704u, 0x40019c32u, 0x3fe536d6u, 0x3f81331eu, 0x3e6c8684u, 0x3c98f936u, 0x00000000u,
      0x3f800000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u,
  },
  {  // |x|^2
      0xb62173f4u, 0x3735e4cfu, 0x37f2ff89u, 0x388c23beu, 0x3917535cu, 0x39ab2ab0u, 0x3a60fadbu, 0x3af9b960u,
      0x3b6e5491u, 0x3c0a4ec5u, 0x3ca5aa8cu, 0x3d2138d9u, 0x3d8737d4u, 0x3ddfb660u, 0x3e0f27abu, 0x3d94004bu,
      0xbe0efdebu, 0xbf1d96c3u, 0xbf89db58u, 0xbf6d9897u, 0xbef69fb8u, 0xbdc4f8a8u, 0xbbde6422u, 0x00000000u,
      0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u,
  },
  {  // |x|^3
      0xbe081a19u, 0xbe084570u, 0xbe08639bu, 0xbe089837u, 0xbe08f409u, 0xbe09ab95u, 0xbe0b66d0u, 0xbe0e400au,
      0xbe124df8u, 0xbe1bde02u, 0xbe2f19c9u, 0xbe4931bfu, 0xbe685fbcu, 0xbe89c95fu, 0xbe96cbcau, 0xbe8044aau,
      0xbe0550f2u, 0x3dcfd6a1u, 0x3e94c826u, 0x3e79345fu, 0x3decec91u, 0x3ca46568u, 0x3aa1e00au, 0x00000000u,
      0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u,
  },
  {  // |x|^4
      0xba3d61dbu, 0x39f097a3u, 0x3a5845dcu, 0x3ab1fa35u, 0x3b0cefb8u, 0x3b653ab6u, 0x3bcae527u, 0x3c221712u,
      0x3c6c5840u, 0x3cc0a703u, 0x3d1dcc19u, 0x3d63656du, 0x3d955907u, 0x3dbf9910u, 0x3dd53f69u, 0x3db7dcefu,
      0x3d639ebeu, 0xba6ede48u, 0xbd22be69u, 0xbd041cf1u, 0xbc64f5abu, 0xbb097a32u, 0xb8ebf380u, 0x00000000u,
      0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u,
  },
  {  // |x|^5
      0x3cb7d80cu, 0x3c9b6050u, 0x3c978d11u, 0x3c92e850u, 0x3c8d058bu, 0x3c848454u, 0x3c6cd623u, 0x3c4c824bu,
      0x3c2a7935u, 0x3be0b390u, 0x3b0651acu, 0xbb232f53u, 0xbbd42fa0u, 0xbc2c5366u, 0xbc492c9eu, 0xbc2a7aa6u,
      0xbbd55d04u, 0xba823a76u, 0x3b102aa8u, 0x3ae25a7eu, 0x3a31f792u, 0x38b84375u, 0x3689bb5au, 0x00000000u,
      0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u,
  },
};
}  // namespace onednn_eltwise_detail

// exp_compute_vector_fwd.
inline float onednn_exp(float x) {
  using namespace onednn_eltwise_detail;
  const float lo = from_bits(kLnFltMin);
  const bool underflow = x < lo;
  x = vmin(x, from_bits(kLnFltMax));
  x = vmax(x, lo);
  float fx = x * from_bits(kLog2e);
  fx = fx + 0.5f;
  const float n = std::floor(fx);
  const float r = std::fma(-n, from_bits(kLn2), x);
  // 2^(n-1) from its exponent bits (n - 1 is an integer in [-127, 127]), zero on underflow.
  const int32_t e = static_cast<int32_t>(n - 1.0f) + 127;
  const float pow2 = underflow ? 0.f : from_bits(static_cast<uint32_t>(e) << 23);
  float p = from_bits(kExpPoly[4]);
  for (int d = 3; d >= 0; --d) p = std::fma(p, r, from_bits(kExpPoly[d]));
  p = std::fma(p, r, 1.0f);
  return (p * pow2) * 2.0f;
}

// tanh_compute_vector_fwd.
inline float onednn_tanh(float x) {
  using namespace onednn_eltwise_detail;
  const uint32_t sign = bits(x) & kSignMask;
  const float a = from_bits(bits(x) & kAbsMask);
  // The index of a's half binade; only lanes that keep the polynomial read the table, and
  // their index is in [1, 30].
  const uint32_t idx = ((bits(a) - kTanhIdxBias) & kTanhIdxMask) >> 22;
  float dst = 1.0f;
  if (!(a >= from_bits(kTanhSaturationLbound))) {  // vcmpps NLE_US: true for NaN
    const uint32_t i = idx & 31u;
    const float r = a - from_bits(bits(a) & kTanhIdxMask);
    float pol = from_bits(kTanhPoly[6][i]);
    for (int d = 5; d >= 0; --d) pol = std::fma(pol, r, from_bits(kTanhPoly[d][i]));
    dst = pol;
  }
  if (!(a >= from_bits(kTanhLinearUbound))) dst = a;
  return from_bits(bits(dst) ^ sign);
}

// gelu_tanh_compute_vector_fwd.
inline float onednn_gelu_tanh(float x) {
  using namespace onednn_eltwise_detail;
  float g = x * x;
  g = std::fma(g, from_bits(kGeluTanhFit), 1.0f);
  g = g * x;
  g = g * from_bits(kSqrtTwoOverPi);
  float y = onednn_tanh(g) + 1.0f;
  y = y * 0.5f;
  return y * x;
}

// gelu_erf_minimax_approx_compute_vector_fwd (AVX-512 kernels).
inline float onednn_gelu_erf_avx512(float x) {
  using namespace onednn_eltwise_detail;
  const float a = from_bits(bits(x) & kAbsMask);
  // vpaddd (wraps) then vpsrad (arithmetic shift), clamped to [1, 24] as signed integers.
  int32_t idx = static_cast<int32_t>(bits(a) + kGeluErfIdxBias) >> 21;
  idx = idx < 1 ? 1 : idx;
  idx = idx > 24 ? 24 : idx;
  if (from_bits(kGeluErfRbound) < a) idx = 23;
  float p = from_bits(kGeluErfPoly[5][idx]);
  for (int d = 4; d >= 0; --d) p = std::fma(p, a, from_bits(kGeluErfPoly[d][idx]));
  p = from_bits(bits(p) ^ (bits(x) & kSignMask));
  p = p + 1.0f;
  return (x * p) * 0.5f;
}

// gelu_erf_compute_vector_fwd on AVX2 kernels (Abramowitz-Stegun).
inline float onednn_gelu_erf_avx2(float x) {
  using namespace onednn_eltwise_detail;
  const float z = x * from_bits(kOneOverSqrtTwo);
  const float az = from_bits(bits(z) & kAbsMask);
  const float t = 1.0f / std::fma(from_bits(kAsP), az, 1.0f);
  float e = z * z;
  e = onednn_exp(from_bits(bits(e) ^ kSignMask));
  e = from_bits(bits(e) ^ kSignMask) * t;  // -exp(-z^2) t
  float r = from_bits(kAsPoly[4]);
  for (int d = 3; d >= 0; --d) r = std::fma(r, t, from_bits(kAsPoly[d]));
  float erf = std::fma(e, r, 1.0f);
  erf = from_bits(bits(erf) ^ (bits(x) & kSignMask));
  const float s = x * 0.5f;
  return std::fma(erf, s, s);
}

// logistic_compute_vector_fwd: exp of -|v|, then e / (e + 1) or 1 - that by v's sign.
inline float onednn_logistic(float v) {
  using namespace onednn_eltwise_detail;
  const bool negative = (bits(v) & kSignMask) != 0;
  const float e = onednn_exp(from_bits(bits(v) | kSignMask));
  const float q = e / (e + 1.0f);
  return negative ? q : 1.0f - q;
}

// swish_compute_vector_fwd: x * logistic(alpha * x).
inline float onednn_swish(float x, float alpha) { return onednn_logistic(x * alpha) * x; }

// oneDNN's reference primitives (e.g. ref_int8 matmul, which AVX2 hosts run for a bfloat16
// output) compute the post-ops in plain C++ with the C library's erff / tanhf / expf
// (src/common/math_utils.hpp gelu_erf_fwd, gelu_tanh_fwd, logistic_fwd, swish_fwd); the same C
// library functions are called here.
inline float onednn_ref_gelu_erf(float s) {
  const float v = s * 0.707106769084930419921875f;
  return (0.5f * s) * (1.f + std::erf(v));
}
inline float onednn_ref_gelu_tanh(float s) {
  const float g = (0.79788458347320556640625f * s) * (1.f + (0.044715f * s) * s);
  const float v = std::tanh(g);
  return static_cast<float>((0.5 * static_cast<double>(s)) * (1.0 + static_cast<double>(v)));  // in double
}
inline float onednn_ref_logistic(float s) {
  const float in = -s;
  return in < 88.72283172607421875f ? 1.f / (1.f + std::exp(in)) : 0.f;
}
inline float onednn_ref_swish(float s, float alpha) { return s * onednn_ref_logistic(alpha * s); }

}  // namespace qref
