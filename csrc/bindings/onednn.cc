// qref bindings: oneDNN's engine (conv2d, deconvolution, the prepared conv2d). Numerics
// live in csrc/qref/onednn; this file checks arguments, converts arrays and releases the GIL
// around every kernel call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "checks.h"
#include "qref/onednn/onednn.h"
#include "qref/onednn/requant.h"
#include "register.h"

namespace qref_bindings {

using namespace qref;

namespace {
// A oneDNN conv2d with its weights packed once (OnednnConv2d, onednn/onednn.h), run by the
// conv2d_run overloads (checks.h def_prepared_runs) on inputs of the prepared NHWC shape.
struct OnednnHolder : PreparedInput {  // the OHWI weight kept alive: the reference route reads it
  std::unique_ptr<OnednnConv2d> conv;
  size_t packed_bytes() const override { return conv->packed_bytes(); }
  const Conv2dShape& shape() const { return conv->shape(); }
  void run(const uint8_t* in, uint8_t* out, int threads) const { conv->run(in, out, threads); }
};
// The quantization checks every oneDNN binding makes, in this order (weight scales, bias, zero
// points, scales); returns the float32 bias (nullptr without one), which `keep` holds alive.
const float* checked_onednn_quant(int64_t O, const py::array& weight_scale, const double* ws, bool per_channel,
                                  const py::object& bias, py::array& keep, double input_scale,
                                  int32_t input_zero_point, double output_scale, int32_t output_zero_point) {
  check_positive_weight_scales(weight_scale, ws, per_channel ? O : 1);
  const float* b = checked_bias(bias, O, keep);
  check_zero_points(input_zero_point, output_zero_point);
  check_positive_scales(input_scale, output_scale);
  return b;
}

// checked_onednn_quant, then the parameters prepare_onednn builds for shape s (it copies the bias).
OnednnParams checked_onednn_params(const Conv2dShape& s, const py::array& weight_scale, const double* ws,
                                   bool per_channel, const py::object& bias, double input_scale,
                                   int32_t input_zero_point, double output_scale, int32_t output_zero_point, bool relu,
                                   const OnednnVariant& v) {
  py::array bias_arr;
  const float* b = checked_onednn_quant(s.O, weight_scale, ws, per_channel, bias, bias_arr, input_scale,
                                        input_zero_point, output_scale, output_zero_point);
  return prepare_onednn(s, input_scale, input_zero_point, ws, per_channel, output_scale, output_zero_point, relu, b,
                        v);
}

// What onednn_conv2d_nhwc and onednn_conv2d_prepare check, in this order (arrays, shape, then the
// checks of checked_onednn_quant), and the shape and parameters they build.
struct OnednnConv2dProblem {
  Conv2dShape s;
  OnednnParams p;
};
OnednnConv2dProblem checked_onednn_conv2d(const Conv2dOperands& ops, bool per_channel, double output_scale,
                                          int32_t output_zero_point, bool relu, const OnednnVariant& v) {
  checked_ptr<uint8_t>(ops.input, "input", 4, "uint8");
  checked_ptr<int8_t>(ops.weight, "weight", 4, "int8");
  const double* ws = checked_ptr<double>(ops.weight_scale, "weight_scale", 1, "float64");
  OnednnConv2dProblem c;
  c.s = make_shape(ops.input, ops.weight, ops.stride, ops.padding, ops.dilation, ops.groups);
  c.p = checked_onednn_params(c.s, ops.weight_scale, ws, per_channel, ops.bias, ops.input_scale, ops.input_zero_point,
                              output_scale, output_zero_point, relu, v);
  return c;
}

}  // namespace

void register_onednn(py::module_& m) {
  def_conv2d(
      m, "onednn_conv2d_nhwc",
      [](const Conv2dOperands& ops, bool per_channel, double output_scale, int32_t output_zero_point, bool relu,
         bool saturate, bool combined, bool float_comp, int threads, bool intermediates, bool kw_major_pairs,
         bool divide_dst) -> py::object {
        // oneDNN int8 conv arithmetic (csrc/qref/onednn/onednn.h); see python/qref/engines/onednn.
        const OnednnConv2dProblem c =
            checked_onednn_conv2d(ops, per_channel, output_scale, output_zero_point, relu,
                                  OnednnVariant{saturate, combined, float_comp, kw_major_pairs, divide_dst});
        const Conv2dShape& s = c.s;
        const uint8_t* in = static_cast<const uint8_t*>(ops.input.data());  // checked above
        const int8_t* w = static_cast<const int8_t*>(ops.weight.data());
        py::array_t<uint8_t> out({s.N, s.OH, s.OW, s.O});
        py::array_t<int32_t> acc, col;
        py::array_t<float> A, y;
        OnednnIntermediates inter;
        if (intermediates) {
          const std::vector<py::ssize_t> shape{s.N, s.OH, s.OW, s.O};
          inter.acc = new_stage(acc, shape);
          inter.colsum = new_stage(col, shape);
          inter.A = new_stage(A, shape);
          inter.y = new_stage(y, shape);
        }
        uint8_t* o = out.mutable_data();
        {
          ReleaseGil release;
          run_onednn_conv2d(s, c.p, in, w, o, threads, intermediates ? &inter : nullptr);
        }
        if (intermediates) return py::make_tuple(out, acc, col, A, y);
        return out;
      },
      py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"), py::arg("relu"),
      py::arg("saturate"), py::arg("combined"), py::arg("float_comp"), py::arg("threads"),
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
        const OnednnParams p =
            checked_onednn_params(s, weight_scale, ws, per_channel, bias, input_scale, input_zero_point, output_scale,
                                  output_zero_point, relu, OnednnVariant{saturate, combined, float_comp});
        py::array_t<uint8_t> out({s.N, s.OH, s.OW, s.O});
        uint8_t* o = out.mutable_data();
        {
          ReleaseGil release;
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
  py::class_<OnednnHolder, PreparedInput>(m, "OnednnConv2d")
      .def_property_readonly("route", [](const OnednnHolder& h) { return std::string(h.conv->route()); });
  def_conv2d(
      m, "onednn_conv2d_prepare",
      [](const Conv2dOperands& ops, bool per_channel, double output_scale, int32_t output_zero_point, bool relu,
         bool saturate, bool combined, bool float_comp, bool kw_major_pairs, bool divide_dst,
         bool weight_scale_reciprocal) {
        // The checks of onednn_conv2d_nhwc; `input` only gives the shape (its values are not read).
        const OnednnConv2dProblem c = checked_onednn_conv2d(
            ops, per_channel, output_scale, output_zero_point, relu,
            OnednnVariant{saturate, combined, float_comp, kw_major_pairs, divide_dst, weight_scale_reciprocal});
        OnednnHolder h;
        h.keep(ops.weight, c.s);
        const int8_t* w = static_cast<const int8_t*>(ops.weight.data());
        {
          ReleaseGil release;
          h.conv = std::make_unique<OnednnConv2d>(c.s, c.p, w);
        }
        return h;
      },
      py::arg("per_channel"), py::arg("output_scale"), py::arg("output_zero_point"), py::arg("relu"),
      py::arg("saturate"), py::arg("combined"), py::arg("float_comp"),
      py::arg("kw_major_pairs") = false, py::arg("divide_dst") = false, py::arg("weight_scale_reciprocal") = false,
      "Pack a oneDNN-arithmetic conv2d's weights once for input's NHWC shape (the values of `input` are not "
      "read); run with conv2d_run. Same bytes as onednn_conv2d_nhwc.");
  m.def(
      "onednn_conv_nd_ndhwc",
      [](py::array input, py::array weight, py::object bias, std::vector<int64_t> stride, std::vector<int64_t> padding,
         std::vector<int64_t> dilation, std::vector<int64_t> output_shape, int64_t groups, bool transposed,
         double input_scale, int32_t input_zero_point, py::array weight_scale, bool per_channel, double output_scale,
         int32_t output_zero_point, bool relu, bool combined, bool divide_dst, const std::string& compensation,
         int threads) {
        // oneDNN's N-d reference loop (csrc/qref/onednn/onednn.h run_onednn_conv_nd).
        const uint8_t* in = checked_ptr<uint8_t>(input, "input", 5, "uint8");
        const int8_t* w = checked_ptr<int8_t>(weight, "weight", 5, "int8");
        const double* ws = checked_ptr<double>(weight_scale, "weight_scale", 1, "float64");
        if (stride.size() != 3 || padding.size() != 3 || dilation.size() != 3 || output_shape.size() != 3)
          throw py::value_error("_core: stride, padding, dilation and output_shape need 3 elements (D, H, W)");
        check_range("groups", groups, 1, kIntMax);
        ConvNdShape s;
        s.N = input.shape(0); s.D = input.shape(1); s.H = input.shape(2); s.W = input.shape(3); s.C = input.shape(4);
        s.O = weight.shape(0); s.KD = weight.shape(1); s.KH = weight.shape(2); s.KW = weight.shape(3);
        for (int i = 0; i < 5; ++i) {
          check_range("input.shape[i]", input.shape(i), 0, kIntMax);
          check_range("weight.shape[i]", weight.shape(i), 1, kIntMax);
        }
        for (int i = 0; i < 3; ++i) {
          check_range("stride[i]", stride[i], 1, kIntMax);
          check_range("padding[i]", padding[i], 0, kIntMax);
          check_range("dilation[i]", dilation[i], 1, kIntMax);
          check_range("output_shape[i]", output_shape[i], 1, kIntMax);
          s.stride[i] = stride[i]; s.pad[i] = padding[i]; s.dilation[i] = dilation[i];
        }
        s.groups = groups;
        s.transposed = transposed;
        if (s.C % groups != 0 || s.O % groups != 0 || weight.shape(4) * groups != s.C)
          throw py::value_error("_core: inconsistent channels/groups");
        s.OD = output_shape[0]; s.OH = output_shape[1]; s.OW = output_shape[2];
        const double macs = static_cast<double>(s.N) * s.OD * s.OH * s.OW * s.O * s.K();
        if (static_cast<double>(s.N) * s.OD * s.OH * s.OW * s.O > static_cast<double>(kMaxElements) || macs > 0x1p62)
          throw py::value_error("_core: output too large (at most 2^40 elements and 2^62 multiply-adds)");
        py::array bias_arr;
        const float* b = checked_onednn_quant(s.O, weight_scale, ws, per_channel, bias, bias_arr, input_scale,
                                              input_zero_point, output_scale, output_zero_point);
        OnednnComp comp;
        if (compensation == "int") comp = OnednnComp::integer;
        else if (compensation == "float") comp = OnednnComp::float_comp;
        else if (compensation == "ref_deconv") comp = OnednnComp::ref_deconv;
        else throw py::value_error("_core: compensation='" + compensation + "' (must be 'int', 'float' or 'ref_deconv')");
        const OnednnVariant v{/*saturate=*/false, combined, comp == OnednnComp::float_comp,
                              /*kw_major_pairs=*/false, divide_dst};
        Conv2dShape s2;  // prepare_onednn reads only O
        s2.O = s.O;
        const OnednnParams p = prepare_onednn(s2, input_scale, input_zero_point, ws, per_channel, output_scale,
                                              output_zero_point, relu, b, v);
        py::array_t<uint8_t> out({s.N, s.OD, s.OH, s.OW, s.O});
        uint8_t* o = out.mutable_data();
        {
          ReleaseGil release;
          run_onednn_conv_nd(s, p, comp, in, w, o, threads);
        }
        return out;
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("output_shape"), py::arg("groups"), py::arg("transposed"), py::arg("input_scale"),
      py::arg("input_zero_point"), py::arg("weight_scale"), py::arg("per_channel"), py::arg("output_scale"),
      py::arg("output_zero_point"), py::arg("relu"), py::arg("combined"), py::arg("divide_dst"),
      py::arg("compensation"), py::arg("threads"),
      "oneDNN's N-d reference loop (Conv3d, deconvolution; 2D as D = 1) on NDHWC uint8 input and "
      "[O][kD][kH][kW][C/groups] int8 weight in conv form, with the compensation chain 'int', 'float' (AMX) or "
      "'ref_deconv' (ref_deconvolution's float round trip).");
  def_prepared_runs<OnednnHolder>(m);
  m.def("onednn_set_dw_vnni", &set_onednn_dw_vnni, py::arg("enabled"),
        "Tests only: False makes depthwise convs take the AVX512 tap-pair kernel on VNNI CPUs too.");
  m.def("onednn_set_simd", &set_onednn_simd, py::arg("enabled"),
        "Tests only: False forces the portable oneDNN loops (the AVX512-VNNI core must give the same bytes).");
  m.def(
      "onednn_requant_steps",
      [](int64_t acc, int64_t colsum, int32_t input_zero_point, bool float_compensation, double weight_scale,
         py::object bias, double input_scale, double output_scale, int32_t output_zero_point, bool relu,
         bool combined, bool divide_dst) {
        // One output element through oneDNN's requantization (csrc/qref/onednn/requant.h), every step.
        check_positive_scales(input_scale, output_scale);
        if (!(std::isfinite(weight_scale) && weight_scale > 0))
          throw py::value_error("_core: weight_scale must be finite and > 0");
        check_zero_points(input_zero_point, output_zero_point);
        const OnednnScales sc = onednn_scales(input_scale, output_scale);
        // requant.h's fields in order: ss, inv, dst_scale, a_zp, out_zp, relu, has_bias, combined,
        // divide_dst, float_comp
        const OnednnRequant r{sc.ss, sc.inv, sc.dst_scale, input_zero_point, output_zero_point,
                              relu, !bias.is_none(), combined, divide_dst, float_compensation};
        const float ws = static_cast<float>(weight_scale);
        const float comb = r.ss * ws;
        const float b = r.has_bias ? static_cast<float>(bias.cast<double>()) : 0.f;
        const float A = onednn_compensated(wrap32(acc), wrap32(colsum), r.a_zp, r.float_comp);
        const OnednnSteps t = onednn_steps(A, combined ? comb : ws, b, r);
        float clamped = t.y;
        if (!(clamped > 0.f)) clamped = 0.f;
        if (clamped > 255.f) clamped = 255.f;
        py::dict d;
        d["ss"] = r.ss; d["inv"] = r.inv; d["dst_scale"] = r.dst_scale; d["ws"] = ws; d["comb"] = comb;
        d["bias"] = b; d["A"] = A; d["scaled"] = t.scaled; d["with_bias"] = t.with_bias;
        d["after_relu"] = t.after_relu; d["dst_scaled"] = t.dst_scaled; d["y"] = t.y; d["clamped"] = clamped;
        d["value"] = static_cast<int>(onednn_output(t.y));
        return d;
      },
      py::arg("acc"), py::arg("colsum"), py::arg("input_zero_point"), py::arg("float_compensation"),
      py::arg("weight_scale"), py::arg("bias"), py::arg("input_scale"), py::arg("output_scale"),
      py::arg("output_zero_point"), py::arg("relu"), py::arg("combined"), py::arg("divide_dst"),
      "One output element through oneDNN's requantization from its int32 sums (acc, colsum over the real taps, "
      "wrapped to int32): every float32 step, as qref.explain shows them.");
  m.def(
      "onednn_scales",
      [](double input_scale, double output_scale) {
        const OnednnScales s = onednn_scales(input_scale, output_scale);  // qref/onednn/requant.h
        return py::make_tuple(s.ss, s.inv);
      },
      py::arg("input_scale"), py::arg("output_scale"),
      "(ss, inv): oneDNN's effective src scale and 1/dst scale as PyTorch and ideep build them.");
}

}  // namespace qref_bindings
