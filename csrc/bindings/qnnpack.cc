// pybind11 bindings of qref::qnnpack (torch's QNNPACK engine). User-facing validation lives in
// python/qref/engines/qnnpack/; the checks here keep a direct _core.qnnpack_* caller from reading
// or writing out of bounds. Numerics are in csrc/qref/qnnpack/; the GIL is released around them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "checks.h"
#include "qref/qnnpack/qnnpack.h"
#include "qref/qnnpack/requant.h"
#include "register.h"

namespace py = pybind11;

namespace {

using qref_bindings::checked_ptr;
using qref_bindings::check_range;
using qref_bindings::kIntMax;
using qref_bindings::ReleaseGil;

void need(bool ok, const std::string& what) {
  if (!ok) throw py::value_error("_core: " + what);
}

void check_float_scale(double s, const char* name) {
  need(std::isfinite(s) && s > 0 && std::isnormal(static_cast<float>(s)), std::string(name) +
       " must be a finite normal float32 > 0");
}

// Per-channel requantization inputs: (O,) float64 weight scales, (O,) int32 zero points, the
// float bias or None; returns (bias_q, scales) as QNNPACK computes them for this input scale.
std::pair<std::vector<int32_t>, std::vector<float>> prepare(int64_t O, const py::array& weight_scale,
                                                            const py::array& weight_zero_point,
                                                            const py::object& bias, double input_scale,
                                                            double output_scale) {
  const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
  const int32_t* wz = checked_ptr<int32_t>(weight_zero_point, "weight_zero_point", 1, "int32");
  need(weight_scale.shape(0) == O && weight_zero_point.shape(0) == O,
       "weight_scale and weight_zero_point must have one entry per output channel");
  check_float_scale(input_scale, "input_scale");
  check_float_scale(output_scale, "output_scale");
  const float* b = nullptr;
  py::array bkeep;
  if (!bias.is_none()) {
    bkeep = py::array(bias);
    b = checked_ptr<float>(bkeep, "bias", 1, "float32");
    need(bkeep.shape(0) == O, "bias must have one entry per output channel");
  }
  std::vector<int32_t> bq(static_cast<size_t>(O), 0);
  std::vector<float> sc(static_cast<size_t>(O));
  const float xs = static_cast<float>(input_scale), ys = static_cast<float>(output_scale);
  for (int64_t o = 0; o < O; ++o) {
    check_float_scale(ws[o], "weight_scale");
    need(wz[o] >= -128 && wz[o] <= 127, "weight_zero_point must be in [-128, 127]");
    sc[static_cast<size_t>(o)] = qref::qnnpack::requant_scale(static_cast<float>(ws[o]), xs, ys);
    need(sc[static_cast<size_t>(o)] > 0 && std::isnormal(sc[static_cast<size_t>(o)]),
         "the requantization scale weight_scale * input_scale / output_scale must be a normal float32 > 0");
    if (b) bq[static_cast<size_t>(o)] = qref::qnnpack::quantize_bias(b[o], ws[o], xs);
  }
  return {bq, sc};
}

// The checked requantization of one conv2d / linear call: the zero points' ranges, and the
// per-channel quantized bias and scales (prepare) the kernel's ConvQuant points into.
struct Requant {
  std::vector<int32_t> bias_q;
  std::vector<float> scales;
  const int32_t* weight_zero_point;
  int32_t input_zero_point, output_zero_point;
  bool relu;

  qref::qnnpack::ConvQuant quant() const {
    qref::qnnpack::ConvQuant q{};
    q.input_zero_point = input_zero_point;
    q.weight_zero_point = weight_zero_point;
    q.bias = bias_q.data();
    q.scale = scales.data();
    q.output_zero_point = output_zero_point;
    q.output_min = relu ? output_zero_point : 0;
    q.output_max = 255;
    return q;
  }
};

Requant requant(int64_t O, const py::array& weight_scale, const py::array& weight_zero_point,
                const py::object& bias, double input_scale, int32_t input_zero_point, double output_scale,
                int32_t output_zero_point, bool relu) {
  check_range("input_zero_point", input_zero_point, 0, 255);
  check_range("output_zero_point", output_zero_point, 0, 255);
  auto [bq, sc] = prepare(O, weight_scale, weight_zero_point, bias, input_scale, output_scale);
  Requant r;
  r.bias_q = std::move(bq);
  r.scales = std::move(sc);
  r.weight_zero_point = static_cast<const int32_t*>(weight_zero_point.data());
  r.input_zero_point = input_zero_point;
  r.output_zero_point = output_zero_point;
  r.relu = relu;
  return r;
}

// The uint8 result of `shape` and, when `intermediates`, the int32 accumulators and float32
// values before rounding (same shape) the kernel also writes; their pointers are null otherwise.
struct Outputs {
  py::array_t<uint8_t> out;
  py::array_t<int32_t> acc;
  py::array_t<float> y;
  int32_t* acc_data = nullptr;
  float* y_data = nullptr;

  Outputs(const std::vector<py::ssize_t>& shape, bool intermediates) : out(shape) {
    if (!intermediates) return;
    acc = py::array_t<int32_t>(shape);
    y = py::array_t<float>(shape);
    acc_data = acc.mutable_data();
    y_data = y.mutable_data();
  }
};

py::object conv2d(const py::array& input, const py::array& weight, const py::array& weight_scale,
                  const py::array& weight_zero_point, const py::object& bias, double input_scale,
                  int32_t input_zero_point, double output_scale, int32_t output_zero_point, bool relu,
                  std::pair<int64_t, int64_t> stride, std::pair<int64_t, int64_t> padding,
                  std::pair<int64_t, int64_t> dilation, int64_t groups, bool return_intermediates) {
  const uint8_t* x = checked_ptr<uint8_t>(input, "input", 4, "uint8");
  const int8_t* w = checked_ptr<int8_t>(weight, "weight", 4, "int8");
  qref::qnnpack::ConvShape s{input.shape(0), input.shape(1), input.shape(2), input.shape(3),
                             weight.shape(0), weight.shape(2), weight.shape(3), stride.first, stride.second,
                             padding.first, padding.second, dilation.first, dilation.second, groups};
  for (auto v : {s.N, s.C, s.H, s.W, s.O, s.KH, s.KW}) check_range("size", v, 1, kIntMax);
  for (auto v : {s.stride_h, s.stride_w, s.dilation_h, s.dilation_w, s.groups}) check_range("stride/dilation/groups", v, 1, kIntMax);
  for (auto v : {s.pad_h, s.pad_w}) check_range("padding", v, 0, kIntMax);
  need(s.C % s.groups == 0 && s.O % s.groups == 0 && weight.shape(1) == s.C / s.groups,
       "weight must be (O, C/groups, KH, KW) with C and O divisible by groups");
  need(s.OH() >= 1 && s.OW() >= 1, "the output would be empty");
  const Requant r = requant(s.O, weight_scale, weight_zero_point, bias, input_scale, input_zero_point, output_scale,
                            output_zero_point, relu);
  const qref::qnnpack::ConvQuant q = r.quant();
  Outputs o({s.N, s.O, s.OH(), s.OW()}, return_intermediates);
  {
    ReleaseGil nogil;
    qref::qnnpack::conv2d_nchw(s, x, w, q, o.out.mutable_data(), o.acc_data, o.y_data);
  }
  if (!return_intermediates) return o.out;
  py::array_t<int32_t> bias_q(static_cast<py::ssize_t>(s.O));
  py::array_t<float> scales(static_cast<py::ssize_t>(s.O));
  std::copy(r.bias_q.begin(), r.bias_q.end(), bias_q.mutable_data());
  std::copy(r.scales.begin(), r.scales.end(), scales.mutable_data());
  return py::make_tuple(o.out, o.acc, o.y, bias_q, scales);
}

py::object linear(const py::array& input, const py::array& weight, const py::array& weight_scale,
                  const py::array& weight_zero_point, const py::object& bias, double input_scale,
                  int32_t input_zero_point, double output_scale, int32_t output_zero_point, bool relu,
                  bool return_intermediates) {
  const uint8_t* x = checked_ptr<uint8_t>(input, "input", 2, "uint8");
  const int8_t* w = checked_ptr<int8_t>(weight, "weight", 2, "int8");
  const int64_t M = input.shape(0), K = input.shape(1), N = weight.shape(0);
  check_range("in_features", K, 1, kIntMax);
  check_range("out_features", N, 1, kIntMax);
  check_range("rows", M, 0, kIntMax);
  need(weight.shape(1) == K, "weight must be (out_features, in_features)");
  const Requant r = requant(N, weight_scale, weight_zero_point, bias, input_scale, input_zero_point, output_scale,
                            output_zero_point, relu);
  const qref::qnnpack::ConvQuant q = r.quant();
  Outputs o({M, N}, return_intermediates);
  {
    ReleaseGil nogil;
    qref::qnnpack::linear(M, K, N, x, w, q, o.out.mutable_data(), o.acc_data, o.y_data);
  }
  if (!return_intermediates) return o.out;
  return py::make_tuple(o.out, o.acc, o.y);
}

qref::qnnpack::AddParams add_params(double a_scale, int32_t a_zero_point, double b_scale, int32_t b_zero_point,
                                    double output_scale, int32_t output_zero_point, bool relu) {
  check_float_scale(a_scale, "a_scale");
  check_float_scale(b_scale, "b_scale");
  check_float_scale(output_scale, "output_scale");
  check_range("a_zero_point", a_zero_point, 0, 255);
  check_range("b_zero_point", b_zero_point, 0, 255);
  check_range("output_zero_point", output_zero_point, 0, 255);
  const float ys = static_cast<float>(output_scale);
  need(qref::qnnpack::add_ratio_ok(static_cast<float>(a_scale) / ys) &&
           qref::qnnpack::add_ratio_ok(static_cast<float>(b_scale) / ys),
       "a_scale / output_scale and b_scale / output_scale must be in [2**-14, 2**8) (QNNPACK's add)");
  return qref::qnnpack::add_params(static_cast<float>(a_scale), a_zero_point, static_cast<float>(b_scale),
                                   b_zero_point, ys, output_zero_point, relu ? output_zero_point : 0, 255);
}

py::array_t<uint8_t> add(const py::array& a, const py::array& b, double a_scale, int32_t a_zero_point, double b_scale,
                         int32_t b_zero_point, double output_scale, int32_t output_zero_point, bool relu) {
  const uint8_t* pa = checked_ptr<uint8_t>(a, "a", -1, "uint8");
  const uint8_t* pb = checked_ptr<uint8_t>(b, "b", -1, "uint8");
  need(a.size() == b.size(), "a and b must have the same number of elements");
  const auto p = add_params(a_scale, a_zero_point, b_scale, b_zero_point, output_scale, output_zero_point, relu);
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(a.size()));
  {
    ReleaseGil nogil;
    qref::qnnpack::add(static_cast<int64_t>(a.size()), pa, pb, p, out.mutable_data());
  }
  return out;
}

py::dict add_params_dict(double a_scale, int32_t a_zero_point, double b_scale, int32_t b_zero_point,
                         double output_scale, int32_t output_zero_point, bool relu) {
  const auto p = add_params(a_scale, a_zero_point, b_scale, b_zero_point, output_scale, output_zero_point, relu);
  py::dict d;
  d["a_output_scale"] = p.a_output_scale;
  d["b_output_scale"] = p.b_output_scale;
  d["a_multiplier"] = p.a_multiplier;
  d["b_multiplier"] = p.b_multiplier;
  d["shift"] = p.shift;
  d["zero_point_product"] = p.zero_point_product;
  return d;
}

py::array_t<uint8_t> lut(int kind, double input_scale, int32_t input_zero_point, double output_scale,
                         int32_t output_zero_point) {
  need(kind >= 0 && kind <= 3, "kind must be 0 (sigmoid), 1 (tanh), 2 (hardsigmoid) or 3 (hardswish)");
  check_float_scale(input_scale, "input_scale");
  check_float_scale(output_scale, "output_scale");
  check_range("input_zero_point", input_zero_point, 0, 255);
  check_range("output_zero_point", output_zero_point, 0, 255);
  py::array_t<uint8_t> t(256);
  qref::qnnpack::lut_table(kind, static_cast<float>(input_scale), input_zero_point, static_cast<float>(output_scale),
                           output_zero_point, 0, 255, t.mutable_data());
  return t;
}

py::array_t<uint8_t> lut_apply(const py::array& input, const py::array& table) {
  const uint8_t* x = checked_ptr<uint8_t>(input, "input", -1, "uint8");
  const uint8_t* t = checked_ptr<uint8_t>(table, "table", 1, "uint8");
  need(table.shape(0) == 256, "table must have 256 entries");
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(input.size()));
  {
    ReleaseGil nogil;
    qref::qnnpack::lut_apply(static_cast<int64_t>(input.size()), x, t, out.mutable_data());
  }
  return out;
}

}  // namespace

namespace qref_bindings {

void register_qnnpack(py::module_& m) {
  m.def("qnnpack_conv2d", &conv2d, py::arg("input"), py::arg("weight"), py::arg("weight_scale"),
        py::arg("weight_zero_point"), py::arg("bias"), py::arg("input_scale"), py::arg("input_zero_point"),
        py::arg("output_scale"), py::arg("output_zero_point"), py::arg("relu"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("return_intermediates"),
        "QNNPACK's quantized conv2d on NCHW uint8 / OIHW int8 arrays: uint8 (N, O, OH, OW), or with "
        "return_intermediates (out, acc, y, bias_q, scales).");
  m.def("qnnpack_linear", &linear, py::arg("input"), py::arg("weight"), py::arg("weight_scale"),
        py::arg("weight_zero_point"), py::arg("bias"), py::arg("input_scale"), py::arg("input_zero_point"),
        py::arg("output_scale"), py::arg("output_zero_point"), py::arg("relu"), py::arg("return_intermediates"),
        "QNNPACK's quantized linear on (M, K) uint8 / (N, K) int8 arrays.");
  m.def("qnnpack_add", &add, py::arg("a"), py::arg("b"), py::arg("a_scale"), py::arg("a_zero_point"),
        py::arg("b_scale"), py::arg("b_zero_point"), py::arg("output_scale"), py::arg("output_zero_point"),
        py::arg("relu"), "QNNPACK's fixed-point quantized add of two uint8 arrays (flat result).");
  m.def("qnnpack_add_params", &add_params_dict, py::arg("a_scale"), py::arg("a_zero_point"), py::arg("b_scale"),
        py::arg("b_zero_point"), py::arg("output_scale"), py::arg("output_zero_point"), py::arg("relu"),
        "QNNPACK's add constants: ratios, multipliers, shift, zero-point product.");
  m.def("qnnpack_lut", &lut, py::arg("kind"), py::arg("input_scale"), py::arg("input_zero_point"),
        py::arg("output_scale"), py::arg("output_zero_point"),
        "QNNPACK's 256-entry table for sigmoid (0), tanh (1), hardsigmoid (2), hardswish (3).");
  m.def("qnnpack_lut_apply", &lut_apply, py::arg("input"), py::arg("table"),
        "table[input] for a uint8 array (flat result).");
}

}  // namespace qref_bindings
