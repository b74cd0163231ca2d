// qref: the only file that includes pybind11. It checks what it is handed
// (so a direct caller cannot crash the process) and releases the GIL around
// every kernel call. Argument validation with user-facing messages lives in
// python/qref/_validate.py; these checks are the safety net behind it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "qref/api.h"
#include "qref/requant.h"

namespace py = pybind11;
using namespace qref;

namespace {

template <class T>
const T* checked_ptr(const py::array& a, const char* name, int ndim, const char* dtype_name) {
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().is(py::dtype::of<T>())) {
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

Conv2dShape make_shape(const py::array& input, const py::array& weight, std::pair<int64_t, int64_t> stride,
                       std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups) {
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
  return s;
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

PYBIND11_MODULE(_core, m) {
  m.doc() = "qref compiled core: bit-exact fbgemm quantized conv2d";

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
        if (groups < 1) throw py::value_error("_core: groups must be >= 1");
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
        const uint8_t* in = checked_ptr<uint8_t>(input, "input", 4, "uint8");
        const int8_t* w = checked_ptr<int8_t>(weight, "weight", 4, "int8");
        const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
        const int32_t* wz = checked_ptr<int32_t>(weight_zero_point, "weight_zero_point", 1, "int32");
        Conv2dShape s = make_shape(input, weight, stride, padding, dilation, groups);
        const int64_t nq = per_channel ? s.O : 1;
        if (weight_scale.shape(0) != nq || weight_zero_point.shape(0) != nq)
          throw py::value_error("_core: weight_scale/weight_zero_point count mismatch");
        const float* b = nullptr;
        py::array bias_arr;
        if (!bias.is_none()) {
          bias_arr = bias.cast<py::array>();
          b = checked_ptr<float>(bias_arr, "bias", 1, "float32");
          if (bias_arr.shape(0) != s.O) throw py::value_error("_core: bias length mismatch");
        }
        if (input_zero_point < 0 || input_zero_point > 255 || output_zero_point < 0 || output_zero_point > 255)
          throw py::value_error("_core: zero point out of range");
        if (!(std::isfinite(input_scale) && input_scale > 0 && std::isfinite(output_scale) && output_scale > 0))
          throw py::value_error("_core: scales must be finite and > 0");
        const KernelEntry& k = find_kernel(intermediates ? std::string("scalar") : kernel);

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
        Conv2dProblem p;
        p.shape = s;
        p.saturate = saturate;
        p.rq = prepare_requant(s, w, ra);

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
        Conv2dShape s;
        s.O = weight.shape(0); s.KH = weight.shape(1); s.KW = weight.shape(2);
        s.groups = groups; s.C = weight.shape(3) * groups;
        const int64_t nq = per_channel ? s.O : 1;
        if (weight_scale.shape(0) != nq || weight_zero_point.shape(0) != nq)
          throw py::value_error("_core: weight_scale/weight_zero_point count mismatch");
        const float* b = nullptr;
        py::array bias_arr;
        if (!bias.is_none()) {
          bias_arr = bias.cast<py::array>();
          b = checked_ptr<float>(bias_arr, "bias", 1, "float32");
          if (bias_arr.shape(0) != s.O) throw py::value_error("_core: bias length mismatch");
        }
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
        if (rq.has_bias) d["bias_term"] = py::array_t<float>(rq.bias_term.size(), rq.bias_term.data());
        return d;
      },
      py::arg("weight"), py::arg("input_scale"), py::arg("input_zero_point"), py::arg("weight_scale"),
      py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"), py::arg("bias"),
      py::arg("groups"));

  m.def(
      "quantize",
      [](py::array x, double scale, int32_t zero_point) {
        const float* src = checked_ptr<float>(x, "x", -1, "float32");
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
  // [bindings: issue 5 compare/export]
  // [bindings: issue 6 robustness]
  // [bindings: issue 7 linear/conv1d/conv3d/transposed]
  // [bindings: issue 8 onednn]
}
