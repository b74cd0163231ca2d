// qref bindings: fbgemm's engine (conv2d, its prepared form, conv3d / transposed convs,
// quantize). Numerics live in csrc/qref/fbgemm; this file checks arguments, converts
// arrays and releases the GIL around every kernel call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "checks.h"
#include "qref/fbgemm/conv2d.h"
#include "qref/fbgemm/conv_nd.h"
#include "qref/fbgemm/kernels/conv_nd_kernels.h"
#include "qref/fbgemm/quantize.h"
#include "qref/fbgemm/requant.h"
#include "qref/gemm/api.h"
#include "register.h"

namespace qref_bindings {

using namespace qref;

namespace {

// What conv2d_nhwc and conv2d_prepare check, in this order (arrays, shape,
// weight quantization, bias, zero points, scales), and the problem they build.
// The bias is only read here: prepare_requant copies it into rq.bias_term.
Conv2dProblem checked_conv2d_problem(const Conv2dOperands& ops, const py::array& weight_zero_point, bool per_channel,
                                     double output_scale, int32_t output_zero_point, bool relu, bool saturate) {
  checked_ptr<uint8_t>(ops.input, "input", 4, "uint8");
  const int8_t* w = checked_ptr<int8_t>(ops.weight, "weight", 4, "int8");
  const double* ws = checked_ptr<double>(ops.weight_scale, "weight_scale", 1, "float64");
  const int32_t* wz = checked_ptr<int32_t>(weight_zero_point, "weight_zero_point", 1, "int32");
  Conv2dProblem p;
  p.shape = make_shape(ops.input, ops.weight, ops.stride, ops.padding, ops.dilation, ops.groups);
  check_weight_qparams(ops.weight_scale, ws, weight_zero_point, wz, per_channel ? p.shape.O : 1);
  py::array bias_arr;
  const float* b = checked_bias(ops.bias, p.shape.O, bias_arr);
  check_zero_points(ops.input_zero_point, output_zero_point);
  check_scale_value("input_scale", ops.input_scale);
  check_scale_value("output_scale", output_scale);
  p.saturate = saturate;
  p.rq = prepare_requant(p.shape, w,
                         RequantArgs{ops.input_scale, ops.input_zero_point, ws, wz, per_channel, output_scale,
                                     output_zero_point, relu, b});
  return p;
}

// A new uint8 output of `shape`, filled by run(out, stages) with the GIL released; with
// `intermediates` the stages acc, raw and y (each of `shape`) too, returned as (out, acc, raw, y).
template <class Run>
py::object run_with_stages(const std::vector<py::ssize_t>& shape, bool intermediates, const Run& run) {
  py::array_t<uint8_t> out(shape);
  py::array_t<int32_t> acc, raw;
  py::array_t<float> y;
  Conv2dIntermediates inter;
  if (intermediates) {
    inter.acc = new_stage(acc, shape);
    inter.raw = new_stage(raw, shape);
    inter.y = new_stage(y, shape);
  }
  uint8_t* o = out.mutable_data();
  {
    ReleaseGil release;
    run(o, intermediates ? &inter : nullptr);
  }
  if (intermediates) return py::make_tuple(out, acc, raw, y);
  return out;
}

// A conv2d with its weights packed once (PreparedConv2d, gemm/api.h); the torch bridge caches
// one per input shape/quantization/ISA/kernel, so repeated calls skip the weight transpose,
// column sums and packing.
struct PreparedHolder : PreparedInput {  // the OHWI weight kept alive: kernels may read it
  std::unique_ptr<PreparedConv2d> prep;
  size_t packed_bytes() const override { return prep->packed_bytes; }
  const Conv2dShape& shape() const { return prep->p.shape; }
  void run(const uint8_t* in, uint8_t* out, int threads) const { prep->run(in, out, threads); }
};

}  // namespace

void register_fbgemm(py::module_& m) {
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

  def_conv2d(
      m, "conv2d_nhwc",
      [](const Conv2dOperands& ops, py::array weight_zero_point, bool per_channel, double output_scale,
         int32_t output_zero_point, bool relu, bool saturate, const std::string& kernel, int threads,
         bool intermediates) -> py::object {
        const Conv2dProblem p = checked_conv2d_problem(ops, weight_zero_point, per_channel, output_scale,
                                                       output_zero_point, relu, saturate);
        const KernelEntry& k = find_kernel(intermediates ? std::string("scalar") : kernel);
        const Conv2dShape& s = p.shape;
        const uint8_t* in = static_cast<const uint8_t*>(ops.input.data());  // checked above
        const int8_t* w = static_cast<const int8_t*>(ops.weight.data());
        return run_with_stages({s.N, s.OH, s.OW, s.O}, intermediates,
                               [&](uint8_t* o, const Conv2dIntermediates* inter) {
                                 run_conv2d(p, k, in, w, o, threads, inter);
                               });
      },
      py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"),
      py::arg("relu"), py::arg("saturate"), py::arg("kernel"), py::arg("threads"), py::arg("intermediates") = false,
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
        // the output zero point and ReLU do not enter these constants
        Requant rq = prepare_requant(s, w,
                                     RequantArgs{input_scale, input_zero_point, ws, wz, per_channel, output_scale,
                                                 /*output_zero_point=*/0, /*relu=*/false, b});
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
          ReleaseGil release;
          quantize_u8(src, n, scale, zero_point, dst);  // qref/fbgemm/quantize.h
        }
        return out;
      },
      py::arg("x"), py::arg("scale"), py::arg("zero_point"));

  py::class_<PreparedHolder, PreparedInput>(m, "PreparedConv2d")
      .def_property_readonly("kernel", [](const PreparedHolder& h) { return std::string(h.prep->kernel->name); })
      .def_property_readonly("scratch_bytes_per_thread",
                             [](const PreparedHolder& h) { return h.prep->kernel->scratch_bytes(h.prep->p); });
  def_conv2d(
      m, "conv2d_prepare",
      [](const Conv2dOperands& ops, py::array weight_zero_point, bool per_channel, double output_scale,
         int32_t output_zero_point, bool relu, bool saturate, const std::string& kernel) {
        const Conv2dProblem p = checked_conv2d_problem(ops, weight_zero_point, per_channel, output_scale,
                                                       output_zero_point, relu, saturate);
        const KernelEntry& k = find_kernel(kernel);
        const int8_t* w = static_cast<const int8_t*>(ops.weight.data());  // checked above
        PreparedHolder h;
        h.keep(ops.weight, p.shape);
        {
          ReleaseGil release;
          h.prep = std::make_unique<PreparedConv2d>(p, k, w);
        }
        return h;
      },
      py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"),
      py::arg("relu"), py::arg("saturate"), py::arg("kernel"),
      "Pack a conv2d's weights once for `kernel`; run with conv2d_run on inputs of input's shape.");
  def_prepared_runs<PreparedHolder>(m);
  // conv3d and transposed conv (2D as D = 1): csrc/qref/fbgemm/conv_nd.h.
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
         int threads, bool intermediates, const std::string& kernel) -> py::object {
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
        const KernelEntry& k = find_kernel(kernel);  // its N-d loops (common/kernels.h ConvNdLoops)
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
        p.rq = prepare_requant(s2, w,
                               RequantArgs{input_scale, input_zero_point, ws, wz, per_channel, output_scale,
                                           output_zero_point, relu, b});
        return run_with_stages({s.N, s.OD, s.OH, s.OW, s.O}, intermediates,
                               [&](uint8_t* o, const Conv2dIntermediates* inter) {
                                 run_conv_nd(p, k, in, w, o, threads, inter);
                               });
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("output_padding"), py::arg("groups"), py::arg("transposed"),
      py::arg("spatial_dims"), py::arg("input_scale"), py::arg("input_zero_point"), py::arg("weight_scale"),
      py::arg("weight_zero_point"), py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"),
      py::arg("relu"), py::arg("path"), py::arg("saturate"), py::arg("reproduce_defects"), py::arg("threads"),
      py::arg("intermediates") = false, py::arg("kernel") = "scalar",
      "Low-level conv3d / transposed conv on NDHWC uint8 input and [O][kD][kH][kW][C/groups] int8 weight.");
}

}  // namespace qref_bindings
