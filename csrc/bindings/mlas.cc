// pybind11 bindings of qref::mlas (ONNX Runtime's MLAS int8 arithmetic). User-facing
// validation lives in python/qref/engines/mlas/; the checks here keep a direct _core.mlas_*
// caller from reading or writing out of bounds. The GIL is released around every kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "checks.h"
#include "qref/mlas/mlas.h"
#include "register.h"

namespace py = pybind11;

namespace {

using qref_bindings::check_int8_zero_point;
using qref_bindings::int8_data;
using qref_bindings::new_int8_array;

namespace M = qref::mlas;

void need(bool ok, const std::string& what) {
  if (!ok) throw py::value_error("_core: " + what);
}

template <class T>
const T* typed(const py::array& a, const char* name, const char* dtype_name) {
  if (!a.dtype().equal(py::dtype::of<T>()))
    throw py::type_error(std::string("_core: ") + name + " must be a " + dtype_name + " array, got dtype " +
                         std::string(py::str(a.dtype())));
  need(a.flags() & py::array::c_style, std::string(name) + " must be C-contiguous");
  return static_cast<const T*>(a.data());
}

void check_scale(double s, const char* name) {
  need(std::isfinite(s) && s > 0, std::string(name) + " must be a finite float32 > 0");
}

// An optional per-column bias (None gives null); `keep` holds the array until the kernel
// has run, since the cast may have made a new one.
template <class T>
const T* column_bias(const py::object& bias, int64_t cols, const char* dtype_name, py::array& keep) {
  if (bias.is_none()) return nullptr;
  keep = bias.cast<py::array>();
  const T* p = typed<T>(keep, "bias", dtype_name);
  need(keep.size() == cols, "bias must have one value per column");
  return p;
}

M::U8S8 mode_of(int host) {
  need(host == 0 || host == 1, "host must be 0 (VNNI: exact) or 1 (AVX2: int16 pair saturation)");
  return host == 0 ? M::U8S8::kExact : M::U8S8::kSaturatePairs;
}

}  // namespace

namespace qref_bindings {

void register_mlas(py::module_& m) {
  m.def("mlas_requantize_output", [](py::array acc, py::object bias, py::array scale, int64_t zero_point, bool out_s8) {
    const int32_t* ap = typed<int32_t>(acc, "acc", "int32");
    need(acc.ndim() == 2, "acc must be 2-D (rows, cols)");
    const int64_t rows = acc.shape(0), cols = acc.shape(1);
    py::array b;
    const int32_t* bp = column_bias<int32_t>(bias, cols, "int32", b);
    const float* sp = typed<float>(scale, "scale", "float32");
    need(scale.size() == 1 || scale.size() == cols, "scale must have 1 or cols values");
    check_int8_zero_point(zero_point, out_s8, "zero_point");
    py::array out = new_int8_array(out_s8, {rows, cols});
    void* op = out.mutable_data();
    {
      ReleaseGil nogil;
      M::requantize_output(ap, bp, rows, cols, sp, scale.size() > 1, static_cast<int32_t>(zero_point), out_s8, op);
    }
    return out;
  }, py::arg("acc"), py::arg("bias"), py::arg("scale"), py::arg("zero_point"), py::arg("out_s8"));

  m.def("mlas_qgemm", [](py::array a, int64_t a_zero_point, py::array bt, py::array b_zero_point, int host) {
    bool a_s8 = false, b_s8 = false;
    const void* ap = int8_data(a, "a", &a_s8);
    const void* bp = int8_data(bt, "bt", &b_s8);
    need(a.ndim() == 2 && bt.ndim() == 2 && a.shape(1) == bt.shape(1), "a (M, K) and bt (N, K) must share K");
    const int64_t Mr = a.shape(0), N = bt.shape(0), K = a.shape(1);
    const int32_t* zp = typed<int32_t>(b_zero_point, "b_zero_point", "int32");
    need(b_zero_point.size() == 1 || b_zero_point.size() == N, "b_zero_point must have 1 or N values");
    check_int8_zero_point(a_zero_point, a_s8, "a_zero_point");
    for (py::ssize_t i = 0; i < b_zero_point.size(); ++i) check_int8_zero_point(zp[i], b_s8, "b_zero_point");
    const M::U8S8 mode = mode_of(host);
    py::array_t<int32_t> out({Mr, N});
    int32_t* op = out.mutable_data();
    {
      ReleaseGil nogil;
      M::qgemm(ap, a_s8, static_cast<int32_t>(a_zero_point), bp, b_s8, zp, b_zero_point.size() > 1, Mr, N, K, mode,
               op);
    }
    return out;
  }, py::arg("a"), py::arg("a_zero_point"), py::arg("bt"), py::arg("b_zero_point"), py::arg("host"));

  m.def("mlas_conv2d_int32", [](py::array x_nhwc, int64_t x_zero_point, py::array w, int64_t w_zero_point,
                                int64_t groups, int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                                int64_t pad_bottom, int64_t pad_right, int64_t dil_h, int64_t dil_w, int host) {
    bool x_s8 = false, w_s8 = false;
    const void* xp = int8_data(x_nhwc, "x_nhwc", &x_s8);
    const void* wp = int8_data(w, "w", &w_s8);
    need(x_nhwc.ndim() == 4 && w.ndim() == 4, "x_nhwc (N, H, W, C) and w (M, C/groups, KH, KW) must be 4-D");
    const int64_t N = x_nhwc.shape(0), H = x_nhwc.shape(1), W = x_nhwc.shape(2), C = x_nhwc.shape(3);
    const int64_t Mo = w.shape(0), Cg = w.shape(1), KH = w.shape(2), KW = w.shape(3);
    need(groups >= 1 && C % groups == 0 && Mo % groups == 0 && Cg == C / groups, "groups must divide C and M");
    need(stride_h >= 1 && stride_w >= 1 && dil_h >= 1 && dil_w >= 1, "strides and dilations must be >= 1");
    need(pad_top >= 0 && pad_left >= 0 && pad_bottom >= 0 && pad_right >= 0, "pads must be >= 0");
    check_int8_zero_point(x_zero_point, x_s8, "x_zero_point");
    check_int8_zero_point(w_zero_point, w_s8, "w_zero_point");
    const int64_t OH = (H + pad_top + pad_bottom - dil_h * (KH - 1) - 1) / stride_h + 1;
    const int64_t OW = (W + pad_left + pad_right - dil_w * (KW - 1) - 1) / stride_w + 1;
    need(OH >= 1 && OW >= 1, "the output would be empty");
    const M::U8S8 mode = mode_of(host);
    py::array_t<int32_t> out({N, OH, OW, Mo});
    int32_t* op = out.mutable_data();
    {
      ReleaseGil nogil;
      M::conv2d_int32(xp, x_s8, static_cast<int32_t>(x_zero_point), N, H, W, C, wp, w_s8,
                      static_cast<int32_t>(w_zero_point), Mo, KH, KW, groups, stride_h, stride_w, pad_top, pad_left,
                      pad_bottom, pad_right, dil_h, dil_w, mode, op, OH, OW);
    }
    return out;
  }, py::arg("x_nhwc"), py::arg("x_zero_point"), py::arg("w"), py::arg("w_zero_point"), py::arg("groups"),
     py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"), py::arg("pad_bottom"),
     py::arg("pad_right"), py::arg("dil_h"), py::arg("dil_w"), py::arg("host"));

  m.def("mlas_quantize_linear", [](py::array x, double scale, int64_t zero_point, bool out_s8) {
    const float* xp = typed<float>(x, "x", "float32");
    check_scale(scale, "scale");
    check_int8_zero_point(zero_point, out_s8, "zero_point");
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array out = new_int8_array(out_s8, shape);
    void* op = out.mutable_data();
    {
      ReleaseGil nogil;
      M::quantize_linear(xp, x.size(), static_cast<float>(scale), static_cast<int32_t>(zero_point), out_s8, op);
    }
    return out;
  }, py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("out_s8"));

  m.def("mlas_dequantize_linear", [](py::array x, py::array scale, py::array zero_point, int64_t inner) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    const float* sp = typed<float>(scale, "scale", "float32");
    const int32_t* zp = typed<int32_t>(zero_point, "zero_point", "int32");
    const int64_t channels = scale.size();
    need(channels >= 1 && zero_point.size() == channels, "scale and zero_point must have the same length >= 1");
    need(inner >= 1 && (channels == 1 || x.size() % (channels * inner) == 0), "inner/channels do not tile x");
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array_t<float> out(shape);
    float* op = out.mutable_data();
    {
      ReleaseGil nogil;
      M::dequantize_linear(xp, s8, x.size(), sp, zp, channels, inner, op);
    }
    return out;
  }, py::arg("x"), py::arg("scale"), py::arg("zero_point"), py::arg("inner"));

  m.def("mlas_qlinear_binary", [](int op, py::array a, double sa, int64_t za, py::array b, double sb, int64_t zb,
                                  double sc, int64_t zc) {
    bool a_s8 = false, b_s8 = false;
    const void* ap = int8_data(a, "a", &a_s8);
    const void* bp = int8_data(b, "b", &b_s8);
    need(a_s8 == b_s8, "a and b must have the same dtype");
    need(op == 0 || op == 1, "op must be 0 (add) or 1 (mul)");
    const bool a_scalar = a.size() == 1 && b.size() != 1;
    const bool b_scalar = b.size() == 1;
    need(a_scalar || b_scalar || a.size() == b.size(), "a and b must have equal sizes or one element");
    check_scale(sa, "sa");
    check_scale(sb, "sb");
    check_scale(sc, "sc");
    check_int8_zero_point(za, a_s8, "za");
    check_int8_zero_point(zb, a_s8, "zb");
    check_int8_zero_point(zc, a_s8, "zc");
    const int64_t n = std::max<int64_t>(a.size(), b.size());
    py::array out = new_int8_array(a_s8, {n});
    void* opp = out.mutable_data();
    {
      ReleaseGil nogil;
      if (op == 0) {
        M::qlinear_add(ap, static_cast<float>(sa), static_cast<int32_t>(za), a_scalar, bp, static_cast<float>(sb),
                       static_cast<int32_t>(zb), b_scalar, static_cast<float>(sc), static_cast<int32_t>(zc), a_s8, n,
                       opp);
      } else if (a_scalar) {  // ORT's QLinearMul broadcasts the scalar side as B
        M::qlinear_mul(bp, static_cast<float>(sb), static_cast<int32_t>(zb), ap, static_cast<float>(sa),
                       static_cast<int32_t>(za), true, static_cast<float>(sc), static_cast<int32_t>(zc), a_s8, n, opp);
      } else {
        M::qlinear_mul(ap, static_cast<float>(sa), static_cast<int32_t>(za), bp, static_cast<float>(sb),
                       static_cast<int32_t>(zb), b_scalar, static_cast<float>(sc), static_cast<int32_t>(zc), a_s8, n,
                       opp);
      }
    }
    return out;
  }, py::arg("op"), py::arg("a"), py::arg("sa"), py::arg("za"), py::arg("b"), py::arg("sb"), py::arg("zb"),
     py::arg("sc"), py::arg("zc"));

  m.def("mlas_lookup_table", [](int kind, double alpha, double sx, int64_t zx, double sy, int64_t zy, bool s8) {
    need(kind >= 0 && kind <= 2, "kind must be 0 (identity), 1 (leaky relu) or 2 (sigmoid)");
    check_scale(sx, "sx");
    check_scale(sy, "sy");
    check_int8_zero_point(zx, s8, "zx");
    check_int8_zero_point(zy, s8, "zy");
    py::array_t<uint8_t> table(256);
    uint8_t* tp = table.mutable_data();
    {
      ReleaseGil nogil;
      M::lookup_table(kind, static_cast<float>(alpha), static_cast<float>(sx), static_cast<int32_t>(zx),
                      static_cast<float>(sy), static_cast<int32_t>(zy), s8, tp);
    }
    return table;
  }, py::arg("kind"), py::arg("alpha"), py::arg("sx"), py::arg("zx"), py::arg("sy"), py::arg("zy"), py::arg("s8"));

  m.def("mlas_logistic", [](py::array x) {
    const float* xp = typed<float>(x, "x", "float32");
    std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
    py::array_t<float> out(shape);
    float* op = out.mutable_data();
    const int64_t n = x.size();
    {
      ReleaseGil nogil;
      for (int64_t i = 0; i < n; ++i) op[i] = M::logistic_fma3(xp[i]);
    }
    return out;
  }, py::arg("x"));

  m.def("mlas_global_average_pool", [](py::array x, int64_t batch, int64_t channels, int64_t image,
                                       bool channels_last, double sx, int64_t zx, double sy, int64_t zy) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(batch >= 1 && channels >= 1 && image >= 1 && batch * channels * image == x.size(), "shape mismatch");
    check_scale(sx, "sx");
    check_scale(sy, "sy");
    check_int8_zero_point(zx, s8, "zx");
    check_int8_zero_point(zy, s8, "zy");
    py::array out = new_int8_array(s8, {batch * channels});
    void* op = out.mutable_data();
    bool ok = false;
    {
      ReleaseGil nogil;
      ok = M::global_average_pool(xp, s8, batch, channels, image, channels_last, static_cast<float>(sx),
                                  static_cast<int32_t>(zx), static_cast<float>(sy), static_cast<int32_t>(zy), op);
    }
    need(ok, "QLinearGlobalAveragePool parameter out of computation range (MLAS refuses sx / (sy * image) "
             "outside [2^-32, 256) and images of 2^24 elements or more)");
    return out;
  }, py::arg("x"), py::arg("batch"), py::arg("channels"), py::arg("image"), py::arg("channels_last"), py::arg("sx"),
     py::arg("zx"), py::arg("sy"), py::arg("zy"));

  m.def("mlas_average_pool2d", [](py::array x, bool channels_last, int64_t KH, int64_t KW, int64_t stride_h,
                                  int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t OH, int64_t OW,
                                  bool count_include_pad, double sx, int64_t zx, double sy, int64_t zy) {
    bool s8 = false;
    const void* xp = int8_data(x, "x", &s8);
    need(x.ndim() == 4, "x must be 4-D");
    const int64_t N = x.shape(0);
    const int64_t C = channels_last ? x.shape(3) : x.shape(1);
    const int64_t H = channels_last ? x.shape(1) : x.shape(2);
    const int64_t W = channels_last ? x.shape(2) : x.shape(3);
    need(KH >= 1 && KW >= 1 && stride_h >= 1 && stride_w >= 1 && pad_top >= 0 && pad_left >= 0 && OH >= 1 &&
             OW >= 1,
         "kernel, strides, pads and output size must be positive");
    for (int64_t oh = 0; oh < OH; ++oh) need(oh * stride_h - pad_top < H, "a window starts below the image");
    for (int64_t ow = 0; ow < OW; ++ow) need(ow * stride_w - pad_left < W, "a window starts right of the image");
    check_scale(sx, "sx");
    check_scale(sy, "sy");
    check_int8_zero_point(zx, s8, "zx");
    check_int8_zero_point(zy, s8, "zy");
    std::vector<py::ssize_t> shape = channels_last ? std::vector<py::ssize_t>{N, OH, OW, C}
                                                   : std::vector<py::ssize_t>{N, C, OH, OW};
    py::array out = new_int8_array(s8, shape);
    void* op = out.mutable_data();
    {
      ReleaseGil nogil;
      M::average_pool2d(xp, s8, N, C, H, W, channels_last, KH, KW, stride_h, stride_w, pad_top, pad_left,
                        count_include_pad, static_cast<float>(sx), static_cast<int32_t>(zx), static_cast<float>(sy),
                        static_cast<int32_t>(zy), OH, OW, op);
    }
    return out;
  }, py::arg("x"), py::arg("channels_last"), py::arg("KH"), py::arg("KW"), py::arg("stride_h"), py::arg("stride_w"),
     py::arg("pad_top"), py::arg("pad_left"), py::arg("OH"), py::arg("OW"), py::arg("count_include_pad"),
     py::arg("sx"), py::arg("zx"), py::arg("sy"), py::arg("zy"));

  m.def("mlas_dynamic_qparams", [](py::array x) {
    const float* xp = typed<float>(x, "x", "float32");
    float scale = 1.0f;
    int32_t zp = 0;
    {
      ReleaseGil nogil;
      M::dynamic_qparams(xp, x.size(), &scale, &zp);
    }
    return py::make_tuple(scale, zp);
  }, py::arg("x"));

  m.def("mlas_scale_bias_output", [](py::array acc, py::array scale, py::object bias) {
    const int32_t* ap = typed<int32_t>(acc, "acc", "int32");
    need(acc.ndim() == 2, "acc must be 2-D (rows, cols)");
    const int64_t rows = acc.shape(0), cols = acc.shape(1);
    const float* sp = typed<float>(scale, "scale", "float32");
    need(scale.size() == 1 || scale.size() == cols, "scale must have 1 or cols values");
    py::array b;
    const float* bp = column_bias<float>(bias, cols, "float32", b);
    py::array_t<float> out({rows, cols});
    float* op = out.mutable_data();
    {
      ReleaseGil nogil;
      M::scale_bias_output(ap, rows, cols, sp, scale.size() > 1, bp, op);
    }
    return out;
  }, py::arg("acc"), py::arg("scale"), py::arg("bias"));
}

}  // namespace qref_bindings
