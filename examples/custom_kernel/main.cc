// Validate the naive AVX2 kernel on a qref golden case, in C++:
//   1. against the expected output stored in the case (torch's, computed by qref),
//   2. against qref's header-only reference (qref/reference.h), recomputed here.
// Writes the kernel's output (NHWC, qref .bin format) for qref.compare in Python.
//
//   validate CASE_DIR [--version 1|2] [--out FILE]     exit 0: bit-exact, 1: mismatch
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "golden_case.h"
#include "naive_conv_avx2.h"
#include "qref/reference.h"

static size_t report(const char* what, const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                     const qref::Conv2dShape& s) {
  size_t bad = 0, shown = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    if (shown++ < 3) {
      const int64_t o = i % s.O, ow = (i / s.O) % s.OW, oh = (i / s.O / s.OW) % s.OH, n = i / s.O / s.OW / s.OH;
      std::printf("  %s: (n=%lld, oh=%lld, ow=%lld, o=%lld): kernel %d, expected %d\n", what, (long long)n,
                  (long long)oh, (long long)ow, (long long)o, got[i], want[i]);
    }
    ++bad;
  }
  std::printf("%s: %zu of %zu elements differ\n", what, bad, got.size());
  return bad;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CASE_DIR [--version 1|2] [--out FILE]\n", argv[0]);
    return 2;
  }
  int version = 2;
  std::string out_path;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--version")) version = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--out")) out_path = argv[i + 1];
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2")) {
    std::printf("SKIP: this CPU has no AVX2\n");
    return 77;
  }
  golden::Case c;
  golden::load(argv[1], c);
  if (c.args.saturate) {
    std::printf("note: this case expects fbgemm's int16-saturating pairs; the naive kernel computes exact "
                "products (a VNNI host's arithmetic), export the case with --isa vnni\n");
  }
  NaiveConvParams p{c.args.shape, c.args.input_scale, c.args.output_scale, c.args.input_zero_point,
                    c.args.output_zero_point, nullptr, nullptr, c.args.bias, c.args.relu};
  const int64_t O = c.args.shape.O;
  std::vector<float> ws(O);
  std::vector<int32_t> wz(O);
  for (int64_t o = 0; o < O; ++o) {
    ws[o] = c.weight_scale[c.args.per_channel ? o : 0];
    wz[o] = c.weight_zero_point[c.args.per_channel ? o : 0];
  }
  p.weight_scale = ws.data();
  p.weight_zero_point = wz.data();

  std::vector<uint8_t> out(c.output.size()), ref(c.output.size());
  naive_conv_avx2(version, p, c.input.data(), c.weight.data(), out.data());
  qref::ref::conv2d(c.args, c.input.data(), c.weight.data(), ref.data());

  std::printf("naive_conv_avx2 version %d on %s (%lldx%lldx%lldx%lld -> %zu outputs)\n", version, argv[1],
              (long long)c.args.shape.N, (long long)c.args.shape.C, (long long)c.args.shape.H,
              (long long)c.args.shape.W, out.size());
  const size_t bad_golden = report("vs golden output", out, c.output, c.args.shape);
  const size_t bad_ref = report("vs qref::ref::conv2d", out, ref, c.args.shape);
  if (!out_path.empty()) golden::write_bin(out_path, 1, 4, c.out_dims, out.data(), out.size());
  std::printf("%s\n", bad_golden == 0 && bad_ref == 0 ? "PASS: bit-exact" : "FAIL");
  return bad_golden == 0 && bad_ref == 0 ? 0 : 1;
}
