// qref: the only file that includes pybind11. It checks what it is handed
// (so a direct caller cannot crash the process) and releases the GIL around
// every kernel call. Argument validation with user-facing messages lives in
// python/qref/_validate.py; these checks are the safety net behind it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#if defined(__SSE2__)
#include <emmintrin.h>  // issue 3: transpose_bytes
#endif
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "qref/api.h"
#include "qref/conv_nd.h"  // issue 7
#include "qref/onednn.h"  // issue 8
#include "qref/requant.h"

namespace py = pybind11;
using namespace qref;

void register_aten(py::module_& m);  // bindings_aten.cc

namespace {

template <class T>
const T* checked_ptr(const py::array& a, const char* name, int ndim, const char* dtype_name) {
  // dtype().equal (PyArray_EquivTypes), not identity: an unpickled array carries its own dtype
  // object; a non-native byte order is not equivalent and is refused.
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().equal(py::dtype::of<T>())) {
    throw py::type_error(std::string("_core: ") + name + " must be a " + dtype_name + " array, got dtype " +
                         std::string(py::str(a.dtype())));
  }
  if (ndim >= 0 && a.ndim() != ndim) {
    throw py::value_error(std::string("_core: ") + name + " must have " + std::to_string(ndim) +
                          " dimensions, got " + std::to_string(a.ndim()));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string("_core: ") + name + " must be C-contiguous");
  }
  return static_cast<const T*>(a.data());
}

// Safety net for direct _core callers (qref._validate gives the user-facing
// messages): every size, stride, padding and dilation fits a C int, as in
// fbgemm's conv_param_t, so no index expression below can overflow int64.
constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxElements = int64_t{1} << 40;

void check_range(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    throw py::value_error(std::string("_core: ") + name + "=" + std::to_string(v) + " is out of range (must be in [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "])");
  }
}

// A scale fbgemm narrows to a normal, finite float32 (and whose reciprocal is
// finite), so no float conversion below is undefined.
void check_scale_value(const char* name, double v) {
  const double lo = static_cast<double>(std::numeric_limits<float>::min());
  const double hi = static_cast<double>(std::numeric_limits<float>::max());
  if (!(std::isfinite(v) && v >= lo && v <= hi)) {
    throw py::value_error(std::string("_core: ") + name + "=" + std::to_string(v) +
                          " is not a valid scale (must be a finite normal float32 > 0)");
  }
}

void check_weight_qparams(const py::array& weight_scale, const double* ws, const py::array& weight_zero_point,
                          const int32_t* wz, int64_t nq) {
  if (weight_scale.shape(0) != nq || weight_zero_point.shape(0) != nq)
    throw py::value_error("_core: weight_scale/weight_zero_point count mismatch (must be 1, or O when per_channel)");
  for (int64_t i = 0; i < nq; ++i) {
    check_scale_value("weight_scale[i]", ws[i]);
    check_range("weight_zero_point[i]", wz[i], -128, 127);
  }
}

// The optional float32 bias (O values; None gives null). `keep` holds the array
// until the kernel has run: bias.cast may have made a new one.
const float* checked_bias(const py::object& bias, int64_t O, py::array& keep) {
  if (bias.is_none()) return nullptr;
  keep = bias.cast<py::array>();
  const float* b = checked_ptr<float>(keep, "bias", 1, "float32");
  if (keep.shape(0) != O) throw py::value_error("_core: bias length mismatch");
  return b;
}

void check_zero_points(int32_t input_zero_point, int32_t output_zero_point) {
  if (input_zero_point < 0 || input_zero_point > 255 || output_zero_point < 0 || output_zero_point > 255)
    throw py::value_error("_core: zero point out of range");
}

// The looser scale checks of the oneDNN and N-d entry points (finite and > 0;
// their float conversions are defined for any such double).
void check_positive_scales(double input_scale, double output_scale) {
  if (!(std::isfinite(input_scale) && input_scale > 0 && std::isfinite(output_scale) && output_scale > 0))
    throw py::value_error("_core: scales must be finite and > 0");
}

void check_positive_weight_scales(const py::array& weight_scale, const double* ws, int64_t nq) {
  if (weight_scale.shape(0) != nq) throw py::value_error("_core: weight_scale count mismatch");
  for (py::ssize_t i = 0; i < weight_scale.shape(0); ++i)
    if (!(std::isfinite(ws[i]) && ws[i] > 0)) throw py::value_error("_core: weight scales must be finite and > 0");
}

const KernelEntry& find_kernel(const std::string& name) {
  size_t n = 0;
  const KernelEntry* const* table = compiled_kernels(&n);
  std::string valid;
  for (size_t i = 0; i < n; ++i) {
    if (!table[i]->usable()) continue;
    if (name == table[i]->name) return *table[i];
    valid += (valid.empty() ? "" : ", ") + std::string("'") + table[i]->name + "'";
  }
  for (size_t i = 0; i < n; ++i) {
    if (name == table[i]->name) {
      throw py::value_error("kernel='" + name + "' is compiled in but this CPU lacks its instructions (usable: " +
                            valid + ")");
    }
  }
  throw py::value_error("kernel='" + name + "' is not a qref kernel (usable: " + valid + ")");
}

py::list usable_kernel_names(bool only_usable) {
  size_t n = 0;
  const KernelEntry* const* table = compiled_kernels(&n);
  py::list out;
  for (size_t i = 0; i < n; ++i)
    if (!only_usable || table[i]->usable()) out.append(table[i]->name);
  return out;
}

// [bindings: issue 3 native speed] src: rows x cols bytes (row stride sstride) ->
// dst: cols x rows (row stride dstride). 16x16 tiles by four rounds of byte
// interleaving (SSE2, part of x86-64); scalar edges and non-x86 builds.
void transpose_bytes(const uint8_t* src, int64_t sstride, uint8_t* dst, int64_t dstride, int64_t rows,
                     int64_t cols) {
  int64_t r0 = 0;
#if defined(__SSE2__)
  for (; r0 + 16 <= rows; r0 += 16) {
    int64_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
      __m128i x[16], t[16];
      for (int i = 0; i < 16; ++i) x[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (r0 + i) * sstride + c0));
      for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 8; ++i) {
          t[2 * i] = _mm_unpacklo_epi8(x[i], x[i + 8]);
          t[2 * i + 1] = _mm_unpackhi_epi8(x[i], x[i + 8]);
        }
        for (int i = 0; i < 16; ++i) x[i] = t[i];
      }
      for (int i = 0; i < 16; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (c0 + i) * dstride + r0), x[i]);
    }
    for (; c0 < cols; ++c0)
      for (int64_t i = 0; i < 16; ++i) dst[c0 * dstride + r0 + i] = src[(r0 + i) * sstride + c0];
  }
#endif
  for (; r0 < rows; ++r0)
    for (int64_t c = 0; c < cols; ++c) dst[c * dstride + r0] = src[r0 * sstride + c];
}

Conv2dShape make_shape(const py::array& input, const py::array& weight, std::pair<int64_t, int64_t> stride,
                       std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups) {
  check_range("groups", groups, 1, kIntMax);
  check_range("stride[0]", stride.first, 1, kIntMax);
  check_range("stride[1]", stride.second, 1, kIntMax);
  check_range("padding[0]", padding.first, 0, kIntMax);
  check_range("padding[1]", padding.second, 0, kIntMax);
  check_range("dilation[0]", dilation.first, 1, kIntMax);
  check_range("dilation[1]", dilation.second, 1, kIntMax);
  for (int i = 0; i < 4; ++i) {
    check_range("input.shape[i]", input.shape(i), 0, kIntMax);
    check_range("weight.shape[i]", weight.shape(i), 0, kIntMax);
  }
  Conv2dShape s;
  s.N = input.shape(0);
  s.H = input.shape(1);
  s.W = input.shape(2);
  s.C = input.shape(3);
  s.O = weight.shape(0);
  s.KH = weight.shape(1);
  s.KW = weight.shape(2);
  s.stride_h = stride.first;
  s.stride_w = stride.second;
  s.pad_h = padding.first;
  s.pad_w = padding.second;
  s.dilation_h = dilation.first;
  s.dilation_w = dilation.second;
  s.groups = groups;
  if (groups < 1 || s.C % groups != 0 || s.O % groups != 0 || weight.shape(3) * groups != s.C)
    throw py::value_error("_core: inconsistent channels/groups");
  if (s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 || s.dilation_w < 1 || s.pad_h < 0 || s.pad_w < 0)
    throw py::value_error("_core: stride/dilation must be >= 1 and padding >= 0");
  if (s.KH < 1 || s.KW < 1) throw py::value_error("_core: empty kernel");
  s.finalize();
  if (s.OH < 1 || s.OW < 1) throw py::value_error("_core: kernel larger than padded input");
  // Every factor is below 2^31, so the products are exact in double up to 2^53
  // and safely above the bounds otherwise.
  const double out_elems = static_cast<double>(s.N) * s.OH * s.OW * s.O;
  const double macs = static_cast<double>(s.N) * s.OH * s.OW * s.K();
  if (out_elems > static_cast<double>(kMaxElements) || macs > 0x1p62)
    throw py::value_error("_core: output too large (at most 2^40 elements and 2^62 multiply-adds)");
  return s;
}

// What conv2d_nhwc and conv2d_prepare check, in this order (arrays, shape,
// weight quantization, bias, zero points, scales), and the problem they build.
// The bias is only read here: prepare_requant copies it into rq.bias_term.
Conv2dProblem checked_conv2d_problem(const py::array& input, const py::array& weight, const py::object& bias,
                                     std::pair<int64_t, int64_t> stride, std::pair<int64_t, int64_t> padding,
                                     std::pair<int64_t, int64_t> dilation, int64_t groups, double input_scale,
                                     int32_t input_zero_point, const py::array& weight_scale,
                                     const py::array& weight_zero_point, bool per_channel, double output_scale,
                                     int32_t output_zero_point, bool relu, bool saturate) {
  checked_ptr<uint8_t>(input, "input", 4, "uint8");
  const int8_t* w = checked_ptr<int8_t>(weight, "weight", 4, "int8");
  const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
  const int32_t* wz = checked_ptr<int32_t>(weight_zero_point, "weight_zero_point", 1, "int32");
  Conv2dProblem p;
  p.shape = make_shape(input, weight, stride, padding, dilation, groups);
  check_weight_qparams(weight_scale, ws, weight_zero_point, wz, per_channel ? p.shape.O : 1);
  py::array bias_arr;
  const float* b = checked_bias(bias, p.shape.O, bias_arr);
  check_zero_points(input_zero_point, output_zero_point);
  check_scale_value("input_scale", input_scale);
  check_scale_value("output_scale", output_scale);
  RequantArgs ra;
  ra.input_scale = input_scale;
  ra.input_zero_point = input_zero_point;
  ra.weight_scale = ws;
  ra.weight_zero_point = wz;
  ra.per_channel = per_channel;
  ra.output_scale = output_scale;
  ra.output_zero_point = output_zero_point;
  ra.relu = relu;
  ra.bias = b;
  p.saturate = saturate;
  p.rq = prepare_requant(p.shape, w, ra);
  return p;
}

py::dict cpu_features_dict() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["x86"] = f.x86;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["f16c"] = f.f16c;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512dq"] = f.avx512dq;
  d["avx512vl"] = f.avx512vl;
  d["avx512vnni"] = f.avx512vnni;
  d["avxvnni"] = f.avxvnni;
  return d;
}

}  // namespace

// Names a type for a generic lambda (the prepared-conv holders are local to the module body).
template <class T>
struct type_tag {
  using type = T;
};

PYBIND11_MODULE(_core, m) {
  m.doc() = "qref compiled core: bit-exact fbgemm quantized conv2d";

  register_aten(m);
  m.def("cpu_features", &cpu_features_dict, "CPU features qref and fbgemm look at.");
  m.def("kernels", []() { return usable_kernel_names(true); }, "Usable kernels, best first.");
  m.def("compiled_kernels", []() { return usable_kernel_names(false); }, "Kernels compiled in.");
  m.def("default_threads", &default_threads);

  m.def(
      "conv_path",
      [](std::vector<int64_t> in_nhwc, std::vector<int64_t> w_ohwi, std::pair<int64_t, int64_t> stride,
         std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups,
         bool avx512_host) {
        if (in_nhwc.size() != 4 || w_ohwi.size() != 4) throw py::value_error("_core: shapes must have 4 dims");
        Conv2dShape s;
        s.N = in_nhwc[0]; s.H = in_nhwc[1]; s.W = in_nhwc[2]; s.C = in_nhwc[3];
        s.O = w_ohwi[0]; s.KH = w_ohwi[1]; s.KW = w_ohwi[2];
        s.stride_h = stride.first; s.stride_w = stride.second;
        s.pad_h = padding.first; s.pad_w = padding.second;
        s.dilation_h = dilation.first; s.dilation_w = dilation.second;
        s.groups = groups;
        check_range("groups", groups, 1, kIntMax);
        for (int i = 0; i < 4; ++i) {
          check_range("input_nhwc_shape[i]", in_nhwc[i], 0, kIntMax);
          check_range("weight_ohwi_shape[i]", w_ohwi[i], 0, kIntMax);
        }
        for (int64_t v : {s.stride_h, s.stride_w, s.dilation_h, s.dilation_w}) check_range("stride/dilation", v, 1, kIntMax);
        for (int64_t v : {s.pad_h, s.pad_w}) check_range("padding", v, 0, kIntMax);
        return std::string(path_name(fbgemm_conv_path(s, avx512_host)));
      },
      py::arg("input_nhwc_shape"), py::arg("weight_ohwi_shape"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("avx512_host"),
      "Which fbgemm conv path (depthwise, groupwise, pointwise, im2col) the shape takes.");

  m.def(
      "conv2d_nhwc",
      [](py::array input, py::array weight, py::object bias, std::pair<int64_t, int64_t> stride,
         std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups,
         double input_scale, int32_t input_zero_point, py::array weight_scale, py::array weight_zero_point,
         bool per_channel, double output_scale, int32_t output_zero_point, bool relu, bool saturate,
         const std::string& kernel, int threads, bool intermediates) -> py::object {
        const Conv2dProblem p =
            checked_conv2d_problem(input, weight, bias, stride, padding, dilation, groups, input_scale,
                                   input_zero_point, weight_scale, weight_zero_point, per_channel, output_scale,
                                   output_zero_point, relu, saturate);
        const KernelEntry& k = find_kernel(intermediates ? std::string("scalar") : kernel);
        const Conv2dShape& s = p.shape;
        const uint8_t* in = static_cast<const uint8_t*>(input.data());  // checked above
        const int8_t* w = static_cast<const int8_t*>(weight.data());

        py::array_t<uint8_t> out({s.N, s.OH, s.OW, s.O});
        py::array_t<int32_t> acc, raw;
        py::array_t<float> y;
        Conv2dIntermediates inter;
        if (intermediates) {
          acc = py::array_t<int32_t>({s.N, s.OH, s.OW, s.O});
          raw = py::array_t<int32_t>({s.N, s.OH, s.OW, s.O});
          y = py::array_t<float>({s.N, s.OH, s.OW, s.O});
          inter.acc = acc.mutable_data();
          inter.raw = raw.mutable_data();
          inter.y = y.mutable_data();
        }
        uint8_t* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          run_conv2d(p, k, in, w, o, threads, intermediates ? &inter : nullptr);
        }
        if (intermediates) return py::make_tuple(out, acc, raw, y);
        return out;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("input_scale"), py::arg("input_zero_point"),
      py::arg("weight_scale"), py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"),
      py::arg("output_zero_point"), py::arg("relu"), py::arg("saturate"), py::arg("kernel"), py::arg("threads"),
      py::arg("intermediates") = false,
      "Low-level conv2d on NHWC uint8 input and OHWI int8 weight; see qref.conv2d.");

  m.def(
      "requant_params",
      [](py::array weight, double input_scale, int32_t input_zero_point, py::array weight_scale,
         py::array weight_zero_point, bool per_channel, double output_scale, py::object bias, int64_t groups) {
        // Per-channel multipliers, bias terms and column offsets exactly as the kernels use them.
        const int8_t* w = checked_ptr<int8_t>(weight, "weight", 4, "int8");
        const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
        const int32_t* wz = checked_ptr<int32_t>(weight_zero_point, "weight_zero_point", 1, "int32");
        check_range("groups", groups, 1, kIntMax);  // K() divides by it
        for (int i = 0; i < 4; ++i) check_range("weight.shape[i]", weight.shape(i), 0, kIntMax);
        Conv2dShape s;
        s.O = weight.shape(0); s.KH = weight.shape(1); s.KW = weight.shape(2);
        s.groups = groups; s.C = weight.shape(3) * groups;
        if (s.O % groups != 0) throw py::value_error("_core: weight.shape[0] must be divisible by groups");
        const int64_t nq = per_channel ? s.O : 1;
        check_weight_qparams(weight_scale, ws, weight_zero_point, wz, nq);
        check_scale_value("input_scale", input_scale);
        check_scale_value("output_scale", output_scale);
        check_range("input_zero_point", input_zero_point, 0, 255);
        py::array bias_arr;
        const float* b = checked_bias(bias, s.O, bias_arr);
        RequantArgs ra;
        ra.input_scale = input_scale;
        ra.input_zero_point = input_zero_point;
        ra.weight_scale = ws;
        ra.weight_zero_point = wz;
        ra.per_channel = per_channel;
        ra.output_scale = output_scale;
        ra.bias = b;
        Requant rq = prepare_requant(s, w, ra);
        py::dict d;
        d["multiplier"] = py::array_t<float>(rq.multiplier.size(), rq.multiplier.data());
        d["col_offset"] = py::array_t<int32_t>(rq.col_offset.size(), rq.col_offset.data());
        // per-channel: bias_term = f32(bias / S); per-tensor (bias_fma): bias_term = bias, added as
        // fma(bias_term, bias_rcp, float(raw)) with one rounding (conv2d.h Requant::bias_fma).
        if (rq.has_bias) d["bias_term"] = py::array_t<float>(rq.bias_term.size(), rq.bias_term.data());
        d["bias_fma"] = rq.bias_fma;
        d["bias_rcp"] = rq.bias_rcp;
        return d;
      },
      py::arg("weight"), py::arg("input_scale"), py::arg("input_zero_point"), py::arg("weight_scale"),
      py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"), py::arg("bias"),
      py::arg("groups"));

  m.def(
      "quantize",
      [](py::array x, double scale, int32_t zero_point) {
        const float* src = checked_ptr<float>(x, "x", -1, "float32");
        check_scale_value("scale", scale);
        check_range("zero_point", zero_point, 0, 255);
        std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
        py::array_t<uint8_t> out(shape);
        uint8_t* dst = out.mutable_data();
        const int64_t n = x.size();
        {
          py::gil_scoped_release release;
          // fbgemm::Quantize<uint8_t, LEGACY=true> AVX2+FMA path (SPEC.md §7):
          // t = fma(x, f32(1/f32(scale)), f32(zp)), min(t, 2147483520), cvtps2dq, clamp.
          const float inv = 1.0f / static_cast<float>(scale);
          const float zp = static_cast<float>(zero_point);
          for (int64_t i = 0; i < n; ++i) {
            float t = std::fmaf(src[i], inv, zp);
            // _mm256_min_ps(t, max): a NaN t yields the second operand.
            t = (t < 2147483520.0f) ? t : 2147483520.0f;
            int32_t q = qref::cvtps2dq(t);
            dst[i] = static_cast<uint8_t>(q < 0 ? 0 : (q > 255 ? 255 : q));
          }
        }
        return out;
      },
      py::arg("x"), py::arg("scale"), py::arg("zero_point"));

  // == bindings added by feature work; each block edited only by its owner ==
  // [bindings: issue 3 native speed]
  // A conv2d with its weights packed once (PreparedConv2d, api.h); the torch
  // bridge caches one per input shape/quantization/ISA/kernel, so repeated
  // calls skip the weight transpose, column sums and packing.
  struct PreparedHolder {
    std::unique_ptr<PreparedConv2d> prep;
    py::array weight;  // keeps the OHWI weight alive (kernels may read it)
    int64_t N, H, W, C;
    const Conv2dShape& shape() const { return prep->p.shape; }
    void run(const uint8_t* in, uint8_t* out, int threads) const { prep->run(in, out, threads); }
  };
  py::class_<PreparedHolder>(m, "PreparedConv2d")
      .def_property_readonly("kernel", [](const PreparedHolder& h) { return std::string(h.prep->kernel->name); })
      .def_property_readonly("packed_bytes", [](const PreparedHolder& h) { return h.prep->packed_bytes; })
      .def_property_readonly("scratch_bytes_per_thread",
                             [](const PreparedHolder& h) { return h.prep->kernel->scratch_bytes(h.prep->p); })
      .def_property_readonly("input_shape_nhwc",
                             [](const PreparedHolder& h) { return py::make_tuple(h.N, h.H, h.W, h.C); });
  m.def(
      "conv2d_prepare",
      [](py::array input, py::array weight, py::object bias, std::pair<int64_t, int64_t> stride,
         std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups,
         double input_scale, int32_t input_zero_point, py::array weight_scale, py::array weight_zero_point,
         bool per_channel, double output_scale, int32_t output_zero_point, bool relu, bool saturate,
         const std::string& kernel) {
        const Conv2dProblem p =
            checked_conv2d_problem(input, weight, bias, stride, padding, dilation, groups, input_scale,
                                   input_zero_point, weight_scale, weight_zero_point, per_channel, output_scale,
                                   output_zero_point, relu, saturate);
        const KernelEntry& k = find_kernel(kernel);
        const Conv2dShape& s = p.shape;
        const int8_t* w = static_cast<const int8_t*>(weight.data());  // checked above
        PreparedHolder h;
        h.weight = weight;
        h.N = s.N;
        h.H = s.H;
        h.W = s.W;
        h.C = s.C;
        {
          py::gil_scoped_release release;
          h.prep = std::make_unique<PreparedConv2d>(p, k, w);
        }
        return h;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("input_scale"), py::arg("input_zero_point"),
      py::arg("weight_scale"), py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"),
      py::arg("output_zero_point"), py::arg("relu"), py::arg("saturate"), py::arg("kernel"),
      "Pack a conv2d's weights once for `kernel`; run with conv2d_run on inputs of input's shape.");
  // Channel transposes of 4-D int8/uint8 arrays (NCHW <-> NHWC, OIHW -> OHWI), 16x16
  // byte tiles: numpy's generic transpose moves ~1 GB/s, which made the layout
  // conversion of a numpy call cost more than its convolution.
  m.def(
      "channels_transpose",
      [](py::array a, bool to_last) {
        // Equivalence, not identity: an unpickled array may carry its own dtype object.
        const bool u8 = py::isinstance<py::array_t<uint8_t>>(a);
        if (!u8 && !py::isinstance<py::array_t<int8_t>>(a))
          throw py::type_error("_core: channels_transpose needs an int8/uint8 array");
        if (a.ndim() != 4 || !(a.flags() & py::array::c_style))
          throw py::value_error("_core: channels_transpose needs a C-contiguous 4-D array");
        const int64_t n = a.shape(0);
        // to_last: (n, c, h, w) -> (n, h, w, c); else (n, h, w, c) -> (n, c, h, w).
        const int64_t rows = to_last ? a.shape(1) : a.shape(1) * a.shape(2);
        const int64_t cols = to_last ? a.shape(2) * a.shape(3) : a.shape(3);
        std::vector<py::ssize_t> shape = to_last
            ? std::vector<py::ssize_t>{a.shape(0), a.shape(2), a.shape(3), a.shape(1)}
            : std::vector<py::ssize_t>{a.shape(0), a.shape(3), a.shape(1), a.shape(2)};
        py::array out(u8 ? py::dtype::of<uint8_t>() : py::dtype::of<int8_t>(), shape);  // canonical dtype
        const uint8_t* src = static_cast<const uint8_t*>(a.data());
        uint8_t* dst = static_cast<uint8_t*>(out.mutable_data());
        {
          py::gil_scoped_release release;
          for (int64_t i = 0; i < n; ++i) transpose_bytes(src + i * rows * cols, cols, dst + i * rows * cols, rows, rows, cols);
        }
        return out;
      },
      py::arg("a"), py::arg("to_last"));
  // conv2d_run: registered with the oneDNN prepared conv below (one body for both kinds).
  // [bindings: issue 5 compare/export]
  // [bindings: issue 6 robustness]
  // [bindings: issue 7 linear/conv1d/conv3d/transposed]
  // conv3d and transposed conv (2D as D = 1): csrc/qref/conv_nd.h.
  m.def(
      "conv_nd_path",
      [](std::vector<int64_t> in_ndhwc, std::vector<int64_t> w_odhwi, std::vector<int64_t> stride,
         std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups, bool transposed,
         int spatial_dims, bool avx512_host) {
        if (in_ndhwc.size() != 5 || w_odhwi.size() != 5 || stride.size() != 3 || padding.size() != 3 ||
            dilation.size() != 3)
          throw py::value_error("_core: conv_nd_path needs 5-d shapes and 3-element stride/padding/dilation");
        if (groups < 1 || (spatial_dims != 2 && spatial_dims != 3))
          throw py::value_error("_core: groups must be >= 1 and spatial_dims 2 or 3");
        ConvNdShape s;
        s.N = in_ndhwc[0]; s.D = in_ndhwc[1]; s.H = in_ndhwc[2]; s.W = in_ndhwc[3]; s.C = in_ndhwc[4];
        s.O = w_odhwi[0]; s.KD = w_odhwi[1]; s.KH = w_odhwi[2]; s.KW = w_odhwi[3];
        for (int i = 0; i < 3; ++i) {
          s.stride[i] = stride[i]; s.pad[i] = padding[i]; s.dilation[i] = dilation[i];
        }
        s.groups = groups;
        s.transposed = transposed;
        s.spatial_dims = spatial_dims;
        return std::string(path_name(fbgemm_conv_nd_path(s, avx512_host)));
      },
      py::arg("input_ndhwc_shape"), py::arg("weight_odhwi_shape"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("transposed"), py::arg("spatial_dims"), py::arg("avx512_host"),
      "Which fbgemm path (depthwise, groupwise, pointwise, direct, im2col) a 3D or transposed conv takes.");

  m.def(
      "conv_nd_ndhwc",
      [](py::array input, py::array weight, py::object bias, std::vector<int64_t> stride,
         std::vector<int64_t> padding, std::vector<int64_t> dilation, std::vector<int64_t> output_padding,
         int64_t groups, bool transposed, int spatial_dims, double input_scale, int32_t input_zero_point,
         py::array weight_scale, py::array weight_zero_point, bool per_channel, double output_scale,
         int32_t output_zero_point, bool relu, const std::string& path, bool saturate, bool reproduce_defects,
         int threads, bool intermediates, bool fast) -> py::object {
        const uint8_t* in = checked_ptr<uint8_t>(input, "input", 5, "uint8");
        const int8_t* w = checked_ptr<int8_t>(weight, "weight", 5, "int8");
        const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
        const int32_t* wz = checked_ptr<int32_t>(weight_zero_point, "weight_zero_point", 1, "int32");
        if (stride.size() != 3 || padding.size() != 3 || dilation.size() != 3 || output_padding.size() != 3)
          throw py::value_error("_core: stride/padding/dilation/output_padding need 3 elements");
        ConvNdShape s;
        s.N = input.shape(0); s.D = input.shape(1); s.H = input.shape(2); s.W = input.shape(3);
        s.C = input.shape(4);
        s.O = weight.shape(0); s.KD = weight.shape(1); s.KH = weight.shape(2); s.KW = weight.shape(3);
        for (int i = 0; i < 3; ++i) {
          s.stride[i] = stride[i]; s.pad[i] = padding[i]; s.dilation[i] = dilation[i];
          s.output_padding[i] = output_padding[i];
          if (s.stride[i] < 1 || s.dilation[i] < 1 || s.pad[i] < 0 || s.output_padding[i] < 0)
            throw py::value_error("_core: stride/dilation must be >= 1 and padding/output_padding >= 0");
        }
        s.groups = groups;
        s.transposed = transposed;
        s.spatial_dims = spatial_dims;
        if (groups < 1 || s.C % groups != 0 || s.O % groups != 0 || weight.shape(4) * groups != s.C)
          throw py::value_error("_core: inconsistent channels/groups");
        if (s.KD < 1 || s.KH < 1 || s.KW < 1) throw py::value_error("_core: empty kernel");
        if (spatial_dims != 2 && spatial_dims != 3) throw py::value_error("_core: spatial_dims must be 2 or 3");
        s.finalize();
        if (s.OD < 1 || s.OH < 1 || s.OW < 1) throw py::value_error("_core: empty output");
        const int64_t nq = per_channel ? s.O : 1;
        if (weight_scale.shape(0) != nq || weight_zero_point.shape(0) != nq)
          throw py::value_error("_core: weight_scale/weight_zero_point count mismatch");
        py::array bias_arr;
        const float* b = checked_bias(bias, s.O, bias_arr);
        check_zero_points(input_zero_point, output_zero_point);
        check_positive_scales(input_scale, output_scale);
        ConvNdProblem p;
        p.shape = s;
        p.saturate = saturate;
        p.reproduce_defects = reproduce_defects;
        p.fast_depthwise = fast;
        if (path == "depthwise") p.path = ConvNdPath::depthwise;
        else if (path == "groupwise") p.path = ConvNdPath::groupwise;
        else if (path == "pointwise") p.path = ConvNdPath::pointwise;
        else if (path == "direct") p.path = ConvNdPath::direct;
        else if (path == "im2col") p.path = ConvNdPath::im2col;
        else throw py::value_error("_core: unknown path '" + path + "'");
        if (p.path == ConvNdPath::direct &&
            (!transposed || groups != 1 || s.C % 2 != 0 || s.pad[1] != 0 || s.pad[2] != 0 || s.dilation[1] != 1 ||
             s.dilation[2] != 1 || spatial_dims != 2))
          throw py::value_error("_core: the direct path needs a 2D transposed conv, groups 1, even IC, no pad/dilation");
        // prepare_requant only reads O, K() = KH*KW*C/groups and the weight rows.
        Conv2dShape s2;
        s2.O = s.O; s2.KH = s.KD * s.KH; s2.KW = s.KW; s2.C = s.C; s2.groups = s.groups;
        RequantArgs ra;
        ra.input_scale = input_scale;
        ra.input_zero_point = input_zero_point;
        ra.weight_scale = ws;
        ra.weight_zero_point = wz;
        ra.per_channel = per_channel;
        ra.output_scale = output_scale;
        ra.output_zero_point = output_zero_point;
        ra.relu = relu;
        ra.bias = b;
        p.rq = prepare_requant(s2, w, ra);

        std::vector<py::ssize_t> oshape{s.N, s.OD, s.OH, s.OW, s.O};
        py::array_t<uint8_t> out(oshape);
        py::array_t<int32_t> acc, raw;
        py::array_t<float> y;
        Conv2dIntermediates inter;
        if (intermediates) {
          acc = py::array_t<int32_t>(oshape);
          raw = py::array_t<int32_t>(oshape);
          y = py::array_t<float>(oshape);
          inter.acc = acc.mutable_data();
          inter.raw = raw.mutable_data();
          inter.y = y.mutable_data();
        }
        uint8_t* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          run_conv_nd(p, in, w, o, threads, intermediates ? &inter : nullptr);
        }
        if (intermediates) return py::make_tuple(out, acc, raw, y);
        return out;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("output_padding"), py::arg("groups"), py::arg("transposed"),
      py::arg("spatial_dims"), py::arg("input_scale"), py::arg("input_zero_point"), py::arg("weight_scale"),
      py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"),
      py::arg("relu"), py::arg("path"), py::arg("saturate"), py::arg("reproduce_defects"), py::arg("threads"),
      py::arg("intermediates") = false, py::arg("fast") = false,
      "Low-level conv3d / transposed conv on NDHWC uint8 input and [O][kD][kH][kW][C/groups] int8 weight.");
  // [bindings: issue 8 onednn]
  m.def(
      "onednn_conv2d_nhwc",
      [](py::array input, py::array weight, py::object bias, std::pair<int64_t, int64_t> stride,
         std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups,
         double input_scale, int32_t input_zero_point, py::array weight_scale, bool per_channel,
         double output_scale, int32_t output_zero_point, bool relu, bool saturate, bool combined,
         bool float_comp, int threads, bool intermediates, bool kw_major_pairs, bool divide_dst) -> py::object {
        // oneDNN int8 conv arithmetic (csrc/qref/onednn.h); see python/qref/onednn.py.
        const uint8_t* in = checked_ptr<uint8_t>(input, "input", 4, "uint8");
        const int8_t* w = checked_ptr<int8_t>(weight, "weight", 4, "int8");
        const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
        Conv2dShape s = make_shape(input, weight, stride, padding, dilation, groups);
        check_positive_weight_scales(weight_scale, ws, per_channel ? s.O : 1);
        py::array bias_arr;
        const float* b = checked_bias(bias, s.O, bias_arr);
        check_zero_points(input_zero_point, output_zero_point);
        check_positive_scales(input_scale, output_scale);
        OnednnVariant v;
        v.saturate = saturate;
        v.combined = combined;
        v.float_comp = float_comp;
        v.kw_major_pairs = kw_major_pairs;
        v.divide_dst = divide_dst;
        OnednnParams p = prepare_onednn(s, input_scale, input_zero_point, ws, per_channel, output_scale,
                                        output_zero_point, relu, b, v);
        py::array_t<uint8_t> out({s.N, s.OH, s.OW, s.O});
        py::array_t<int32_t> acc, col;
        py::array_t<float> A, y;
        OnednnIntermediates inter;
        if (intermediates) {
          acc = py::array_t<int32_t>({s.N, s.OH, s.OW, s.O});
          col = py::array_t<int32_t>({s.N, s.OH, s.OW, s.O});
          A = py::array_t<float>({s.N, s.OH, s.OW, s.O});
          y = py::array_t<float>({s.N, s.OH, s.OW, s.O});
          inter.acc = acc.mutable_data();
          inter.colsum = col.mutable_data();
          inter.A = A.mutable_data();
          inter.y = y.mutable_data();
        }
        uint8_t* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          run_onednn_conv2d(s, p, in, w, o, threads, intermediates ? &inter : nullptr);
        }
        if (intermediates) return py::make_tuple(out, acc, col, A, y);
        return out;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("input_scale"), py::arg("input_zero_point"),
      py::arg("weight_scale"), py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"),
      py::arg("relu"), py::arg("saturate"), py::arg("combined"), py::arg("float_comp"), py::arg("threads"),
      py::arg("intermediates") = false, py::arg("kw_major_pairs") = false, py::arg("divide_dst") = false,
      "oneDNN int8 conv2d arithmetic on NHWC uint8 input and OHWI int8 weight; see qref.conv2d(engine=...).");
  m.def(
      "onednn_conv_transpose2d_nhwc",
      [](py::array input, py::array weight, py::object bias, std::pair<int64_t, int64_t> stride,
         std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> output_padding,
         std::pair<int64_t, int64_t> dilation, int64_t groups, double input_scale, int32_t input_zero_point,
         py::array weight_scale, bool per_channel, double output_scale, int32_t output_zero_point, bool relu,
         bool saturate, bool combined, bool float_comp, int threads) -> py::object {
        // oneDNN deconvolution; weight already rearranged to [O][KH][KW][C/groups] (see onednn.h).
        const uint8_t* in = checked_ptr<uint8_t>(input, "input", 4, "uint8");
        const int8_t* w = checked_ptr<int8_t>(weight, "weight", 4, "int8");
        const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
        Conv2dShape s;
        s.N = input.shape(0); s.H = input.shape(1); s.W = input.shape(2); s.C = input.shape(3);
        s.O = weight.shape(0); s.KH = weight.shape(1); s.KW = weight.shape(2);
        s.stride_h = stride.first; s.stride_w = stride.second;
        s.pad_h = padding.first; s.pad_w = padding.second;
        s.dilation_h = dilation.first; s.dilation_w = dilation.second;
        s.groups = groups;
        if (groups < 1 || s.C % groups != 0 || s.O % groups != 0 || weight.shape(3) * groups != s.C)
          throw py::value_error("_core: inconsistent channels/groups");
        if (s.stride_h < 1 || s.stride_w < 1 || s.dilation_h < 1 || s.dilation_w < 1 || s.pad_h < 0 ||
            s.pad_w < 0 || output_padding.first < 0 || output_padding.second < 0 || s.KH < 1 || s.KW < 1)
          throw py::value_error("_core: bad stride/padding/dilation/kernel");
        s.OH = (s.H - 1) * s.stride_h - 2 * s.pad_h + s.dilation_h * (s.KH - 1) + output_padding.first + 1;
        s.OW = (s.W - 1) * s.stride_w - 2 * s.pad_w + s.dilation_w * (s.KW - 1) + output_padding.second + 1;
        if (s.OH < 1 || s.OW < 1) throw py::value_error("_core: empty output");
        check_positive_weight_scales(weight_scale, ws, per_channel ? s.O : 1);
        py::array bias_arr;
        const float* b = checked_bias(bias, s.O, bias_arr);
        check_zero_points(input_zero_point, output_zero_point);
        check_positive_scales(input_scale, output_scale);
        OnednnVariant v;
        v.saturate = saturate;
        v.combined = combined;
        v.float_comp = float_comp;
        OnednnParams p = prepare_onednn(s, input_scale, input_zero_point, ws, per_channel, output_scale,
                                        output_zero_point, relu, b, v);
        py::array_t<uint8_t> out({s.N, s.OH, s.OW, s.O});
        uint8_t* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          run_onednn_conv2d(s, p, in, w, o, threads, nullptr, /*transposed=*/true);
        }
        return out;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("output_padding"), py::arg("dilation"), py::arg("groups"), py::arg("input_scale"),
      py::arg("input_zero_point"), py::arg("weight_scale"), py::arg("per_channel"), py::arg("output_scale"),
      py::arg("output_zero_point"), py::arg("relu"), py::arg("saturate"), py::arg("combined"),
      py::arg("float_comp"), py::arg("threads"),
      "oneDNN int8 deconvolution arithmetic (transposed conv2d) on NHWC input; see qref.onednn.conv_transpose2d.");
  // A oneDNN conv2d with its weights packed once (OnednnConv2d, onednn.h), run by
  // conv2d_run (an overload of issue 3's) on inputs of the prepared NHWC shape.
  struct OnednnHolder {
    std::unique_ptr<OnednnConv2d> conv;
    py::array weight;  // keeps the OHWI weight alive (the reference route reads it)
    int64_t N, H, W, C;
    const Conv2dShape& shape() const { return conv->shape(); }
    void run(const uint8_t* in, uint8_t* out, int threads) const { conv->run(in, out, threads); }
  };
  py::class_<OnednnHolder>(m, "OnednnConv2d")
      .def_property_readonly("route", [](const OnednnHolder& h) { return std::string(h.conv->route()); })
      .def_property_readonly("packed_bytes", [](const OnednnHolder& h) { return h.conv->packed_bytes(); })
      .def_property_readonly("input_shape_nhwc",
                             [](const OnednnHolder& h) { return py::make_tuple(h.N, h.H, h.W, h.C); });
  m.def(
      "onednn_conv2d_prepare",
      [](py::array input, py::array weight, py::object bias, std::pair<int64_t, int64_t> stride,
         std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups,
         double input_scale, int32_t input_zero_point, py::array weight_scale, bool per_channel,
         double output_scale, int32_t output_zero_point, bool relu, bool saturate, bool combined,
         bool float_comp, bool kw_major_pairs, bool divide_dst) {
        // The checks of onednn_conv2d_nhwc; `input` only gives the shape (its values are not read).
        checked_ptr<uint8_t>(input, "input", 4, "uint8");
        checked_ptr<int8_t>(weight, "weight", 4, "int8");
        const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
        Conv2dShape s = make_shape(input, weight, stride, padding, dilation, groups);
        check_positive_weight_scales(weight_scale, ws, per_channel ? s.O : 1);
        py::array bias_arr;
        const float* b = checked_bias(bias, s.O, bias_arr);
        check_zero_points(input_zero_point, output_zero_point);
        check_positive_scales(input_scale, output_scale);
        OnednnVariant v;
        v.saturate = saturate;
        v.combined = combined;
        v.float_comp = float_comp;
        v.kw_major_pairs = kw_major_pairs;
        v.divide_dst = divide_dst;
        const OnednnParams p = prepare_onednn(s, input_scale, input_zero_point, ws, per_channel, output_scale,
                                              output_zero_point, relu, b, v);  // copies the bias
        OnednnHolder h;
        h.weight = weight;
        h.N = s.N;
        h.H = s.H;
        h.W = s.W;
        h.C = s.C;
        const int8_t* w = static_cast<const int8_t*>(weight.data());
        {
          py::gil_scoped_release release;
          h.conv = std::make_unique<OnednnConv2d>(s, p, w);
        }
        return h;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("input_scale"), py::arg("input_zero_point"),
      py::arg("weight_scale"), py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"),
      py::arg("relu"), py::arg("saturate"), py::arg("combined"), py::arg("float_comp"),
      py::arg("kw_major_pairs") = false, py::arg("divide_dst") = false,
      "Pack a oneDNN-arithmetic conv2d's weights once for input's NHWC shape (the values of `input` are not "
      "read); run with conv2d_run. Same bytes as onednn_conv2d_nhwc.");
  // Both prepared kinds, writing into memory the caller owns (the torch bridge passes the
  // data pointer of a channels_last quint8 tensor it just allocated, so the output is not
  // copied into a new tensor afterwards: that copy, with the fresh allocation's page faults,
  // cost 0.1-0.25 ms on 784 KB outputs). `out_bytes` must equal N*OH*OW*O.
  // Both prepared kinds (PreparedConv2d, OnednnConv2d) share these bindings: same checks, same
  // calls, through the holders' shape() and run().
  auto def_prepared_runs = [&m](auto holder_tag) {
    using H = typename decltype(holder_tag)::type;
    auto checked_input = [](const H& h, py::array& input) {
      const uint8_t* in = checked_ptr<uint8_t>(input, "input", 4, "uint8");
      if (input.shape(0) != h.N || input.shape(1) != h.H || input.shape(2) != h.W || input.shape(3) != h.C)
        throw py::value_error("_core: input shape differs from the prepared conv2d's");
      return in;
    };
    m.def(
        "conv2d_run",
        [checked_input](const H& h, py::array input, int threads) {
          const uint8_t* in = checked_input(h, input);
          const Conv2dShape& s = h.shape();
          py::array_t<uint8_t> out({s.N, s.OH, s.OW, s.O});
          uint8_t* o = out.mutable_data();
          {
            py::gil_scoped_release release;
            h.run(in, o, threads);
          }
          return out;
        },
        py::arg("prepared"), py::arg("input"), py::arg("threads"),
        "Run a prepared conv2d (conv2d_prepare or onednn_conv2d_prepare) on an NHWC uint8 input; returns the NHWC "
        "output.");
    m.def(
        "conv2d_run_into",
        [checked_input](const H& h, py::array input, uintptr_t out_address, int64_t out_bytes, int threads) {
          const uint8_t* in = checked_input(h, input);
          const Conv2dShape& s = h.shape();
          if (out_bytes != s.N * s.OH * s.OW * s.O || (out_bytes > 0 && out_address == 0))
            throw py::value_error("_core: conv2d_run_into needs N*OH*OW*O output bytes");
          uint8_t* o = reinterpret_cast<uint8_t*>(out_address);
          py::gil_scoped_release release;
          h.run(in, o, threads);
        },
        py::arg("prepared"), py::arg("input"), py::arg("out_address"), py::arg("out_bytes"), py::arg("threads"),
        "Run a prepared conv2d (conv2d_prepare or onednn_conv2d_prepare) into NHWC memory at out_address "
        "(N*OH*OW*O bytes, kept alive by the caller).");
    m.def(
        "prepared_output_shape",
        [](const H& h) {
          const Conv2dShape& s = h.shape();
          return py::make_tuple(s.N, s.OH, s.OW, s.O);
        },
        py::arg("prepared"), "(N, OH, OW, O) of a prepared conv2d's NHWC output.");
  };
  def_prepared_runs(type_tag<PreparedHolder>{});
  def_prepared_runs(type_tag<OnednnHolder>{});
  m.def("onednn_set_dw_vnni", &set_onednn_dw_vnni, py::arg("enabled"),
        "Tests only: False makes depthwise convs take the AVX512 tap-pair kernel on VNNI CPUs too.");
  m.def("onednn_set_simd", &set_onednn_simd, py::arg("enabled"),
        "Tests only: False forces the portable oneDNN loops (the AVX512-VNNI core must give the same bytes).");
  m.def(
      "onednn_scales",
      [](double input_scale, double output_scale) {
        const float src_rcp = static_cast<float>(1.0 / input_scale);
        const float dst_rcp = static_cast<float>(1.0 / output_scale);
        const float dst_scale = 1.0f / dst_rcp;
        return py::make_tuple(1.0f / src_rcp, 1.0f / dst_scale);
      },
      py::arg("input_scale"), py::arg("output_scale"),
      "(ss, inv): oneDNN's effective src scale and 1/dst scale as PyTorch and ideep build them.");
}
