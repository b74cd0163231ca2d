// pybind11 bindings of qref::aten (ATen's quantized non-conv ops). User-facing
// validation lives in python/qref/engines/aten/; the checks here are the
// safety net that keeps a direct _core.aten_* caller from reading or writing
// out of bounds. The GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "qref/aten/aten_ops.h"
#include "qref/aten/aten_ref.h"
#include "checks.h"
#include "register.h"

namespace py = pybind11;

namespace {

using qref_bindings::check_int8_zero_point;
using qref_bindings::int8_data;
using qref_bindings::new_int8_array;

using qref::aten::Sched;

const float* fdata(const py::array& a, const char* name) {
  if (!a.dtype().equal(py::dtype::of<float>()))
    throw py::type_error(std::string("_core: ") + name + " must be a float32 array, got dtype " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string("_core: ") + name + " must be C-contiguous");
  return static_cast<const float*>(a.data());
}

void need(bool ok, const std::string& what);

// An optional float32 array (None gives null); `keep` holds it until the kernel has run,
// since the cast may have made a new one.
const float* optional_fdata(const py::object& a, const char* name, py::array& keep) {
  if (a.is_none()) return nullptr;
  keep = a.cast<py::array>();
  return fdata(keep, name);
}

void need(bool ok, const std::string& what) {
  if (!ok) throw py::value_error("_core: " + what);
}

// A new uint8/int8 array of like's shape.
py::array new_q_like(bool s8, const py::array& like) {
  return new_int8_array(s8, std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
}

// A new array shaped like `like` (uint8, or int8 when s8), filled by run(data) with the GIL
// released: the output step every elementwise binding below shares.
template <class Run>
py::array q_like_nogil(bool s8, const py::array& like, Run&& run) {
  py::array out = new_q_like(s8, like);
  void* data = out.mutable_data();
  {
    qref_bindings::ReleaseGil nogil;
    run(data);
  }
  return out;
}

void check_scale(double s, const char* name) {
  need(std::isfinite(s) && s >= static_cast<double>(std::numeric_limits<float>::min()) &&
           s <= static_cast<double>(std::numeric_limits<float>::max()),
       std::string(name) + " must be a finite normal float32 > 0");
}

// One tensor's quantization parameters; `prefix` starts the names errors use
// (prefix + "scale", prefix + "zero_point"). Each field has its own type, so a
// brace list in the wrong order does not compile.
struct QParams {
  double scale;
  int64_t zero_point;
  const char* prefix;
};

// Every scale, then every zero point (for the dtype), in the order given.
void check_qparams(std::initializer_list<QParams> qs, bool s8) {
  for (const QParams& q : qs) check_scale(q.scale, (std::string(q.prefix) + "scale").c_str());
  for (const QParams& q : qs) check_int8_zero_point(q.zero_point, s8, (std::string(q.prefix) + "zero_point").c_str());
}

// Input and output qparams of an elementwise op.
void check_io_qparams(double si, int64_t zi, double so, int64_t zo, bool s8) {
  check_qparams({{si, zi, "input "}, {so, zo, "output "}}, s8);
}

Sched sched(int cap, int threads) {
  need(cap >= 0 && cap <= 2, "cap must be 0 (default), 1 (avx2) or 2 (avx512)");
  need(threads >= 1 && threads <= 4096, "num_threads must be in [1, 4096]");
  return Sched{cap, threads};
}

}  // namespace

namespace qref_bindings {

void register_aten(py::module_& m) {
  namespace A = qref::aten;

  m.def("aten_quantize_per_tensor", [](py::array x, double scale, int64_t zp, bool s8, int threads) {
    const float* xp = fdata(x, "x");
    check_qparams({{scale, zp, ""}}, s8);
    need(threads >= 1 && threads <= 4096, "num_threads must be in [1, 4096]");
    const int64_t n = x.size();
    return q_like_nogil(s8, x, [&](void* op) {
      A::quantize_per_tensor(xp, n, scale, zp, s8, op, threads);
    });
  }, py::arg("x"), py::arg("scale"), py::arg("zp"), py::arg("s8"), py::arg("threads"));

  m.def("aten_quantize_per_channel", [](py::array x, int64_t outer, int64_t channels, int64_t inner,
                                        py::array_t<double, py::array::c_style | py::array::forcecast> scales,
                                        py::array_t<int64_t, py::array::c_style | py::array::forcecast> zps, bool s8) {
    const float* xp = fdata(x, "x");
    need(outer >= 0 && channels >= 1 && inner >= 0 && outer * channels * inner == x.size(), "shape mismatch");
    need(scales.size() == channels && zps.size() == channels, "scales/zero_points must have one value per channel");
    for (int64_t c = 0; c < channels; ++c) {
      check_scale(scales.data()[c], "scales[c]");
      check_int8_zero_point(zps.data()[c], s8, "zero_points[c]");
    }
    return q_like_nogil(s8, x, [&](void* op) {
      A::quantize_per_channel(xp, outer, channels, inner, scales.data(), zps.data(), s8, op);
    });
  }, py::arg("x"), py::arg("outer"), py::arg("channels"), py::arg("inner"), py::arg("scales"), py::arg("zps"), py::arg("s8"));

  m.def("aten_dequantize_per_tensor", [](py::array q, double scale, int64_t zp) {
    bool s8 = false;
    const void* qp = int8_data(q, "q", &s8);
    check_qparams({{scale, zp, ""}}, s8);
    std::vector<py::ssize_t> shape(q.shape(), q.shape() + q.ndim());
    py::array_t<float> out(shape);
    float* op = out.mutable_data();
    const int64_t n = q.size();
    {
      qref_bindings::ReleaseGil nogil;
      A::dequantize_per_tensor(qp, n, scale, zp, s8, op);
    }
    return out;
  }, py::arg("q"), py::arg("scale"), py::arg("zp"));

  m.def("aten_dequantize_per_channel", [](py::array q, int64_t outer, int64_t channels, int64_t inner,
                                          py::array_t<double, py::array::c_style | py::array::forcecast> scales,
                                          py::array_t<int64_t, py::array::c_style | py::array::forcecast> zps) {
    bool s8 = false;
    const void* qp = int8_data(q, "q", &s8);
    need(outer >= 0 && channels >= 1 && inner >= 0 && outer * channels * inner == q.size(), "shape mismatch");
    need(scales.size() == channels && zps.size() == channels, "scales/zero_points must have one value per channel");
    std::vector<py::ssize_t> shape(q.shape(), q.shape() + q.ndim());
    py::array_t<float> out(shape);
    float* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::dequantize_per_channel(qp, outer, channels, inner, scales.data(), zps.data(), s8, op);
    }
    return out;
  }, py::arg("q"), py::arg("outer"), py::arg("channels"), py::arg("inner"), py::arg("scales"), py::arg("zps"));

  m.def("aten_binary", [](int op, py::array a, py::array b, double sa, int64_t za, double sb, int64_t zb, double so,
                          int64_t zo, int cap, int threads, bool simd) {
    bool s8a = false, s8b = false;
    const void* ap = int8_data(a, "a", &s8a);
    const void* bp = int8_data(b, "b", &s8b);
    need(s8a == s8b, "a and b must have the same dtype");
    need(a.size() == b.size(), "a and b must have the same number of elements");
    need(op >= 0 && op <= 3, "unknown binary op");
    check_qparams({{sa, za, "a_"}, {sb, zb, "b_"}, {so, zo, ""}}, s8a);
    Sched sc = sched(cap, threads);
    sc.simd = simd;
    const int64_t n = a.size();
    return q_like_nogil(s8a, a, [&](void* op_) {
      A::binary(op, ap, bp, n, sa, za, sb, zb, so, zo, s8a, op_, sc);
    });
  }, py::arg("op"), py::arg("a"), py::arg("b"), py::arg("sa"), py::arg("za"), py::arg("sb"), py::arg("zb"), py::arg("so"), py::arg("zo"), py::arg("cap"), py::arg("threads"), py::arg("simd") = true);

  m.def("aten_unary", [](int op, py::array x, double si, int64_t zi, double so, int64_t zo, double arg0, double arg1,
                         int cap, int threads, double arg2, bool scalar_only) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(op >= 0 && op <= 8, "unknown unary op");
    check_io_qparams(si, zi, so, zo, s8);
    Sched sc = sched(cap, threads);
    sc.scalar_only = scalar_only;
    const int64_t n = x.size();
    return q_like_nogil(s8, x, [&](void* op_) {
      A::unary(op, xp, n, si, zi, so, zo, arg0, arg1, arg2, s8, op_, sc);
    });
  }, py::arg("op"), py::arg("x"), py::arg("si"), py::arg("zi"), py::arg("so"), py::arg("zo"), py::arg("param0"), py::arg("param1"), py::arg("cap"), py::arg("threads"), py::arg("param2") = 0.0, py::arg("scalar_only") = false);

  m.def("aten_clamp", [](py::array x, double scale, int64_t zp, py::object lo, py::object hi) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    check_qparams({{scale, zp, ""}}, s8);
    const bool has_lo = !lo.is_none(), has_hi = !hi.is_none();
    const double lv = has_lo ? lo.cast<double>() : 0.0, hv = has_hi ? hi.cast<double>() : 0.0;
    const int64_t n = x.size();
    return q_like_nogil(s8, x, [&](void* op) {
      A::clamp(xp, n, scale, zp, has_lo, lv, has_hi, hv, s8, op);
    });
  }, py::arg("x"), py::arg("scale"), py::arg("zp"), py::arg("lo"), py::arg("hi"));

  m.def("aten_add_scalar", [](py::array x, double scale, int64_t zp, double c, bool relu, int cap, int threads) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    check_qparams({{scale, zp, ""}}, s8);
    need(std::isfinite(c) && std::fabs(c / scale) < 1e15, "other must be finite and |other / scale| < 1e15");
    const Sched sc = sched(cap, threads);
    const int64_t n = x.size();
    double os = 0;
    int64_t oz = 0;
    py::array out = q_like_nogil(s8, x, [&](void* op) {
      A::add_scalar(xp, n, scale, zp, c, relu, s8, op, &os, &oz, sc);
    });
    return py::make_tuple(out, os, oz);
  }, py::arg("x"), py::arg("scale"), py::arg("zp"), py::arg("c"), py::arg("relu"), py::arg("cap"), py::arg("threads"));

  m.def("aten_mul_scalar", [](py::array x, double scale, int64_t zp, double c, bool relu) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    check_qparams({{scale, zp, ""}}, s8);
    need(std::isfinite(c), "other must be finite");
    const int64_t n = x.size();
    double os = 0;
    int64_t oz = 0;
    py::array out = q_like_nogil(s8, x, [&](void* op) {
      qref::aten::mul_scalar(xp, n, scale, zp, c, relu, s8, op, &os, &oz);
    });
    return py::make_tuple(out, os, oz);
  }, py::arg("x"), py::arg("scale"), py::arg("zp"), py::arg("c"), py::arg("relu"));

  m.def("aten_prelu", [](py::array x, int64_t outer, int64_t channels, int64_t inner, py::array w, double si,
                         int64_t zi, double sw, int64_t zw, double so, int64_t zo) {
    bool s8 = false, s8w = false;
    const void* xp = int8_data(x, "x", &s8);
    const void* wp = int8_data(w, "weight", &s8w);
    need(s8 == s8w, "x and weight must have the same dtype");
    need(outer >= 0 && channels >= 1 && inner >= 0 && outer * channels * inner == x.size(), "shape mismatch");
    need(w.size() == channels, "weight must have one value per channel");
    check_qparams({{si, zi, "input "}, {sw, zw, "weight "}, {so, zo, "output "}}, s8);
    return q_like_nogil(s8, x, [&](void* op) {
      qref::aten::prelu(xp, outer, channels, inner, wp, si, zi, sw, zw, so, zo, s8, op);
    });
  }, py::arg("x"), py::arg("outer"), py::arg("channels"), py::arg("inner"), py::arg("w"), py::arg("si"), py::arg("zi"), py::arg("sw"), py::arg("zw"), py::arg("so"), py::arg("zo"));

  m.def("aten_cat_nhwc", [](std::vector<py::array> xs, double scale, int64_t zp, std::vector<double> scales,
                            std::vector<int64_t> zps, bool relu, int cap) {
    need(!xs.empty(), "cat needs at least one input");
    need(xs.size() == scales.size() && xs.size() == zps.size(), "one scale and zero point per input");
    need(cap >= 0 && cap <= 2, "cap must be 0, 1 or 2");
    bool s8 = false;
    std::vector<const void*> ptrs;
    std::vector<int64_t> cs;
    const py::array& x0 = xs[0];
    need(x0.ndim() == 4, "inputs must be 4-d NHWC arrays");
    const int64_t pixels = x0.shape(0) * x0.shape(1) * x0.shape(2);
    int64_t c_out = 0;
    for (size_t t = 0; t < xs.size(); ++t) {
      bool s = false;
      ptrs.push_back(int8_data(xs[t], "xs[i]", &s));
      if (t == 0) s8 = s;
      need(s == s8, "all inputs must have the same dtype");
      need(xs[t].ndim() == 4 && xs[t].shape(0) == x0.shape(0) && xs[t].shape(1) == x0.shape(1) &&
               xs[t].shape(2) == x0.shape(2),
           "inputs must agree in N, H, W");
      cs.push_back(xs[t].shape(3));
      c_out += xs[t].shape(3);
      check_scale(scales[t], "scales[i]");
      check_int8_zero_point(zps[t], s8, "zero_points[i]");
    }
    check_qparams({{scale, zp, ""}}, s8);
    py::array out = new_int8_array(s8, {x0.shape(0), x0.shape(1), x0.shape(2), static_cast<py::ssize_t>(c_out)});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::cat_nhwc(ptrs.data(), cs.data(), scales.data(), zps.data(), static_cast<int64_t>(xs.size()), pixels, scale,
                  zp, relu, s8, op, cap);
    }
    return out;
  }, py::arg("xs"), py::arg("scale"), py::arg("zp"), py::arg("scales"), py::arg("zps"), py::arg("relu"), py::arg("cap"));

  // Pools and resampling on planes (NCHW: planes = N * C) or NHWC arrays.
  m.def("aten_max_pool2d", [](py::array x, int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 3 || x.ndim() == 4, "x must be (planes, H, W) or channels-last (N, H, W, C)");
    const bool nhwc = x.ndim() == 4;
    const int64_t P = x.shape(0), ih = x.shape(1), iw = x.shape(2), C = nhwc ? x.shape(3) : 1;
    need(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && dh >= 1 && dw >= 1 && ph >= 0 && pw >= 0, "bad pool geometry");
    need(oh >= 0 && ow >= 0 && (oh == 0 || (oh - 1) * sh - ph < ih) && (ow == 0 || (ow - 1) * sw - pw < iw) &&
             ph <= (kh - 1) * dh / 2 + 1 && pw <= (kw - 1) * dw / 2 + 1,
         "output size does not fit the input");
    py::array out = nhwc ? new_int8_array(s8, {P, oh, ow, C}) : new_int8_array(s8, {P, oh, ow});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      if (nhwc)
        A::max_pool2d_nhwc(xp, P, ih, iw, C, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, s8, op);
      else
        A::max_pool2d(xp, P, ih, iw, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, s8, op);
    }
    return out;
  }, py::arg("x"), py::arg("oh"), py::arg("ow"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"));

  m.def("aten_avg_pool2d_nchw", [](py::array x, int64_t oh, int64_t ow, int64_t kh, int64_t kw, int64_t sh,
                                   int64_t sw, int64_t ph, int64_t pw, bool cip, int64_t divisor, double si,
                                   int64_t zi, double so, int64_t zo) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 3 || x.ndim() == 4, "x must be (planes, H, W) or channels-last (N, H, W, C)");
    const bool nhwc = x.ndim() == 4;
    const int64_t P = x.shape(0), ih = x.shape(1), iw = x.shape(2), C = nhwc ? x.shape(3) : 1;
    need(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && ph >= 0 && pw >= 0 && 2 * ph <= kh && 2 * pw <= kw,
         "bad pool geometry");
    need(oh >= 0 && ow >= 0 && (oh == 0 || (oh - 1) * sh - ph < ih) && (ow == 0 || (ow - 1) * sw - pw < iw),
         "output size does not fit the input");
    need(divisor >= 0, "divisor_override must be >= 0 (0: none)");
    py::array out = new_int8_array(s8, {P, oh, ow});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::avg_pool2d_nchw(xp, P, ih, iw, oh, ow, kh, kw, sh, sw, ph, pw, cip, divisor, si, zi, so, zo, s8, op);
    }
    return out;
  }, py::arg("x"), py::arg("oh"), py::arg("ow"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("cip"), py::arg("divisor"), py::arg("si"), py::arg("zi"), py::arg("so"), py::arg("zo"));

  m.def("aten_avg_pool_nhwc", [](py::array x, std::vector<int64_t> osz, std::vector<int64_t> k,
                                 std::vector<int64_t> s, std::vector<int64_t> p, bool cip, int64_t divisor, double si,
                                 int64_t zi, double so, int64_t zo, int cap) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 5, "x must be (N, D, H, W, C)");
    need(osz.size() == 3 && k.size() == 3 && s.size() == 3 && p.size() == 3, "3 sizes each");
    need(cap >= 0 && cap <= 2, "cap must be 0, 1 or 2");
    for (int i = 0; i < 3; ++i) {
      const int64_t in = x.shape(1 + i);
      need(k[i] >= 1 && s[i] >= 1 && p[i] >= 0 && 2 * p[i] <= k[i], "bad pool geometry");
      need(osz[i] >= 0 && (osz[i] == 0 || (osz[i] - 1) * s[i] - p[i] < in), "output size does not fit the input");
    }
    need(divisor >= 0, "divisor_override must be >= 0 (0: none)");
    py::array out = new_int8_array(s8, {x.shape(0), osz[0], osz[1], osz[2], x.shape(4)});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::avg_pool_nhwc(xp, x.shape(0), x.shape(4), x.shape(1), x.shape(2), x.shape(3), osz[0], osz[1], osz[2], k[0],
                       k[1], k[2], s[0], s[1], s[2], p[0], p[1], p[2], cip, divisor, si, zi, so, zo, s8, op, cap);
    }
    return out;
  }, py::arg("x"), py::arg("osz"), py::arg("k"), py::arg("s"), py::arg("p"), py::arg("cip"), py::arg("divisor"), py::arg("si"), py::arg("zi"), py::arg("so"), py::arg("zo"), py::arg("cap"));

  m.def("aten_adaptive_avg_pool_nchw", [](py::array x, int64_t od, int64_t oh, int64_t ow) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 4, "x must be (planes, D, H, W)");
    need(od >= 1 && oh >= 1 && ow >= 1 && x.shape(1) >= 1 && x.shape(2) >= 1 && x.shape(3) >= 1,
         "sizes must be >= 1");
    py::array out = new_int8_array(s8, {x.shape(0), od, oh, ow});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::adaptive_avg_pool_nchw(xp, x.shape(0), x.shape(1), x.shape(2), x.shape(3), od, oh, ow, s8, op);
    }
    return out;
  }, py::arg("x"), py::arg("od"), py::arg("oh"), py::arg("ow"));

  m.def("aten_adaptive_avg_pool_nhwc", [](py::array x, int64_t od, int64_t oh, int64_t ow, double si, int64_t zi,
                                          double so, int64_t zo, int cap) {
    need(cap >= 0 && cap <= 2, "cap must be 0, 1 or 2");
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 5, "x must be (N, D, H, W, C)");
    need(od >= 1 && oh >= 1 && ow >= 1 && x.shape(1) >= 1 && x.shape(2) >= 1 && x.shape(3) >= 1,
         "sizes must be >= 1");
    py::array out = new_int8_array(s8, {x.shape(0), od, oh, ow, x.shape(4)});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::adaptive_avg_pool_nhwc(xp, x.shape(0), x.shape(4), x.shape(1), x.shape(2), x.shape(3), od, oh, ow, si, zi,
                                so, zo, s8, op, cap);
    }
    return out;
  }, py::arg("x"), py::arg("od"), py::arg("oh"), py::arg("ow"), py::arg("si"), py::arg("zi"), py::arg("so"), py::arg("zo"), py::arg("cap"));

  m.def("aten_mean_inner", [](py::array x, int64_t outer, int64_t inner) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(outer >= 0 && inner >= 1 && outer * inner == x.size(), "shape mismatch");
    py::array out = new_int8_array(s8, {static_cast<py::ssize_t>(outer)});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::mean_inner(xp, outer, inner, s8, op);
    }
    return out;
  }, py::arg("x"), py::arg("outer"), py::arg("inner"));

  m.def("aten_upsample_nearest2d", [](py::array x, int64_t oh, int64_t ow, double sh, double sw) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 3 && x.shape(1) >= 1 && x.shape(2) >= 1, "x must be (planes, H, W) with H, W >= 1");
    need(oh >= 1 && ow >= 1, "output sizes must be >= 1");
    py::array out = new_int8_array(s8, {x.shape(0), oh, ow});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::upsample_nearest2d(xp, x.shape(0), x.shape(1), x.shape(2), oh, ow, sh, sw, s8, op);
    }
    return out;
  }, py::arg("x"), py::arg("oh"), py::arg("ow"), py::arg("sh"), py::arg("sw"));

  m.def("aten_upsample_bilinear2d", [](py::array x, int64_t oh, int64_t ow, bool align_corners, double sh, double sw,
                                       double si, int64_t zi, double so, int64_t zo, bool contracted) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 3 && x.shape(1) >= 1 && x.shape(2) >= 1, "x must be (planes, H, W) with H, W >= 1");
    need(oh >= 1 && ow >= 1, "output sizes must be >= 1");
    check_scale(si, "input scale");
    check_scale(so, "output scale");
    py::array out = new_int8_array(s8, {x.shape(0), oh, ow});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      A::upsample_bilinear2d(xp, x.shape(0), x.shape(1), x.shape(2), oh, ow, align_corners, sh, sw, si, zi, so, zo,
                             s8, op, contracted);
    }
    return out;
  }, py::arg("x"), py::arg("oh"), py::arg("ow"), py::arg("align_corners"), py::arg("sh"), py::arg("sw"), py::arg("si"), py::arg("zi"), py::arg("so"), py::arg("zo"), py::arg("contracted"));

  m.def("aten_batch_norm_nhwc", [](py::array x, py::object weight, py::object bias, py::array mean, py::array var,
                                   double eps, double si, int64_t zi, double so, int64_t zo, bool relu, int cap) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 2, "x must be (pixels, C)");
    need(cap >= 0 && cap <= 2, "cap must be 0, 1 or 2");
    const int64_t P = x.shape(0), C = x.shape(1);
    auto has_c = [&](const py::array& a, const char* name) {
      need(a.ndim() == 1 && a.shape(0) == C, std::string(name) + " must have C values");
    };
    py::array w_keep, b_keep;
    const float* wp = optional_fdata(weight, "weight", w_keep);
    if (!weight.is_none()) has_c(w_keep, "weight");
    const float* bp = optional_fdata(bias, "bias", b_keep);
    if (!bias.is_none()) has_c(b_keep, "bias");
    const float* mp = fdata(mean, "mean");
    has_c(mean, "mean");
    const float* vp = fdata(var, "var");
    has_c(var, "var");
    check_io_qparams(si, zi, so, zo, s8);
    py::array out = new_int8_array(s8, {P, C});
    void* op = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      qref::aten::batch_norm_nhwc(xp, P, C, wp, bp, mp, vp, eps, si, zi, so, zo, relu, s8, op, cap);
    }
    return out;
  }, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("mean"), py::arg("var"), py::arg("eps"), py::arg("si"), py::arg("zi"), py::arg("so"), py::arg("zo"), py::arg("relu"), py::arg("cap"));

  m.def("aten_normalize", [](py::array x, int64_t M, int64_t N, py::object gamma, py::object beta, bool per_channel,
                             int64_t num_channels, int64_t num_groups, double eps, double xs, int64_t xz, double ys,
                             int64_t yz, int cap) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(cap >= 0 && cap <= 2, "cap must be 0, 1 or 2");
    need(M >= 0 && N >= 1 && M * N == x.size(), "shape mismatch");
    need(!per_channel || (num_groups >= 1 && num_channels >= 1 && num_channels % num_groups == 0 &&
                          N % (num_channels / num_groups) == 0),
         "channels/groups mismatch");
    const int64_t nparam = per_channel ? num_channels : N;
    py::array g_keep, b_keep;
    const float* gp = optional_fdata(gamma, "weight", g_keep);
    need(gamma.is_none() || g_keep.size() == nparam, "weight size mismatch");
    const float* bp = optional_fdata(beta, "bias", b_keep);
    need(beta.is_none() || b_keep.size() == nparam, "bias size mismatch");
    check_io_qparams(xs, xz, ys, yz, s8);
    return q_like_nogil(s8, x, [&](void* op) {
      qref::aten::normalize(xp, M, N, gp, bp, per_channel, num_channels, num_groups, eps, xs, xz, ys, yz, s8, op, cap);
    });
  }, py::arg("x"), py::arg("M"), py::arg("N"), py::arg("gamma"), py::arg("beta"), py::arg("per_channel"), py::arg("num_channels"), py::arg("num_groups"), py::arg("eps"), py::arg("xs"), py::arg("xz"), py::arg("ys"), py::arg("yz"), py::arg("cap"));

  // The SLEEF expf_u10 that qsigmoid's SIMD body uses, elementwise (for tests).
  m.def("aten_sleef_expf", [](py::array x) {
    const float* xp = fdata(x, "x");
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array_t<float> out(shape);
    float* op = out.mutable_data();
    const int64_t n = x.size();
    for (int64_t i = 0; i < n; ++i) op[i] = qref::aten::sleef_expf_u10(xp[i]);
    return out;
  }, py::arg("x"));

  // Vectorized<float>::tanh / ::erf of the AVX2/AVX512 capabilities, element by
  // element (for tests against torch's float kernels that call the same).
  m.def("aten_vec_math", [](py::array x, const std::string& fn) {
    const float* xp = fdata(x, "x");
    need(fn == "tanh" || fn == "erf", "fn must be 'tanh' or 'erf'");
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array_t<float> out(shape);
    float* op = out.mutable_data();
    const int64_t n = x.size();
    const bool t = fn == "tanh";
    for (int64_t i = 0; i < n; ++i) op[i] = t ? qref::aten::sleef_tanhf_u10(xp[i]) : qref::aten::aten_vec_erf(xp[i]);
    return out;
  }, py::arg("x"), py::arg("fn"));

  m.def("aten_linear_dynamic", [](py::array x, py::array w, py::array w_scales, py::array w_zps, py::object bias,
                                  bool reduce_range, bool relu) {
    const float* xp = fdata(x, "x");
    need(w.dtype().equal(py::dtype::of<int8_t>()) && (w.flags() & py::array::c_style) && w.ndim() == 2,
         "w must be a C-contiguous 2-d int8 array");
    need(x.ndim() >= 1, "x must have at least one dimension");
    const int64_t N = w.shape(0), K = w.shape(1);
    need(x.shape(x.ndim() - 1) == K, "x's last dimension must equal w's columns");
    const float* sp = fdata(w_scales, "w_scales");
    need(w_zps.dtype().equal(py::dtype::of<int32_t>()) && (w_zps.flags() & py::array::c_style),
         "w_zps must be a C-contiguous int32 array");
    const int64_t nq = w_scales.size();
    need(nq == w_zps.size() && (nq == 1 || nq == N), "w_scales/w_zps must hold 1 or N values");
    py::array b;
    const float* bp = optional_fdata(bias, "bias", b);
    need(bias.is_none() || b.size() == N, "bias must hold N values");
    const int64_t M = K > 0 ? x.size() / K : 0;
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    shape.back() = N;
    py::array_t<float> out(shape);
    float* op = out.mutable_data();
    double xs = 0.0;
    int32_t xz = 0;
    {
      qref_bindings::ReleaseGil nogil;
      qref::aten::linear_dynamic(xp, M, K, static_cast<const int8_t*>(w.data()), N, sp,
                                 static_cast<const int32_t*>(w_zps.data()), nq == N && N != 1, bp, reduce_range, relu,
                                 op, &xs, &xz);
    }
    return py::make_tuple(out, xs, xz);
  }, py::arg("x"), py::arg("w"), py::arg("w_scales"), py::arg("w_zps"), py::arg("bias"), py::arg("reduce_range"),
     py::arg("relu"));

  m.def("aten_softmax_lastdim", [](py::array x, double si, int64_t zi, double so, int64_t zo, int cap) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() >= 1 && x.shape(x.ndim() - 1) > 0, "x must have a non-empty last dimension");
    check_io_qparams(si, zi, so, zo, s8);
    need(cap >= 0 && cap <= 2, "cap must be 0 (default), 1 (avx2) or 2 (avx512)");
    py::array out = new_q_like(s8, x);
    const int64_t n = x.shape(x.ndim() - 1);
    void* op_ = out.mutable_data();
    {
      qref_bindings::ReleaseGil nogil;
      qref::aten::softmax_lastdim(xp, x.size() / n, n, si, zi, so, zo, s8, op_, cap);
    }
    return out;
  }, py::arg("x"), py::arg("si"), py::arg("zi"), py::arg("so"), py::arg("zo"), py::arg("cap"));
}

}  // namespace qref_bindings
