// qref bindings: argument checks and helpers shared by the per-engine binding files. They
// check what a direct _core caller hands them (so it cannot crash the process); the
// user-facing messages come from python/qref/common/validate.py, these are the safety net behind it.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <unistd.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "qref/common/kernels.h"
#include "qref/gemm/conv2d.h"

namespace qref_bindings {

namespace py = pybind11;

// Releases the GIL around a kernel call (every binding uses it instead of
// py::gil_scoped_release). Taking the GIL back is where a daemon thread meets interpreter
// shutdown: CPython (before 3.14) then ends the thread with pthread_exit, a forced unwind, and
// pybind11's gil_scoped_release takes the GIL back in a noexcept destructor, which turns that
// unwind into std::terminate (SIGABRT at exit). A thread that comes back while the interpreter
// is finalizing parks here instead (the process is exiting; CPython 3.14 does the same); should
// finalization start between the check and the re-acquire, the destructor lets the forced
// unwind through (noexcept(false)).
class ReleaseGil {
 public:
  ReleaseGil() : state_(PyEval_SaveThread()) {}
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;
  ~ReleaseGil() noexcept(false) {
    if (finalizing()) {
      for (;;) pause();
    }
    PyEval_RestoreThread(state_);
  }

 private:
  static bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
  }
  PyThreadState* state_;
};

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

// Every size, stride, padding and dilation fits a C int, as in fbgemm's conv_param_t, so no
// index expression can overflow int64.
constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxElements = int64_t{1} << 40;

void check_range(const char* name, int64_t v, int64_t lo, int64_t hi);
// A C-contiguous uint8 or int8 array: its data, and (in *s8) whether it is int8. Anything
// else is a TypeError (dtype) or ValueError (layout) naming the argument.
const void* int8_data(const py::array& a, const char* name, bool* s8);
// A zero point in the range of the 8-bit dtype (int8 when s8, else uint8).
void check_int8_zero_point(int64_t z, bool s8, const char* name);
// A new uint8 (or int8 when s8) array of `shape`.
py::array new_int8_array(bool s8, const std::vector<py::ssize_t>& shape);
// A scale fbgemm narrows to a normal, finite float32 (and whose reciprocal is finite).
void check_scale_value(const char* name, double v);
void check_weight_qparams(const py::array& weight_scale, const double* ws, const py::array& weight_zero_point,
                          const int32_t* wz, int64_t nq);
// The optional float32 bias (O values; None gives null). `keep` holds the array until the
// kernel has run: bias.cast may have made a new one.
const float* checked_bias(const py::object& bias, int64_t O, py::array& keep);
void check_zero_points(int32_t input_zero_point, int32_t output_zero_point);
// The looser scale checks of the oneDNN and N-d entry points (finite and > 0).
void check_positive_scales(double input_scale, double output_scale);
void check_positive_weight_scales(const py::array& weight_scale, const double* ws, int64_t nq);
const qref::KernelEntry& find_kernel(const std::string& name);
py::list usable_kernel_names(bool only_usable);
// The Conv2dShape of an NHWC input and OHWI weight, checked (sizes, consistency, output size).
qref::Conv2dShape make_shape(const py::array& input, const py::array& weight, std::pair<int64_t, int64_t> stride,
                             std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation,
                             int64_t groups);

// A new array of `shape` for one intermediate stage of a conv; returns the data the kernel fills.
template <class T>
T* new_stage(py::array_t<T>& a, const std::vector<py::ssize_t>& shape) {
  a = py::array_t<T>(shape);
  return a.mutable_data();
}

// The operands every conv2d binding (fbgemm's and oneDNN's conv2d_nhwc and conv2d_prepare) takes
// first: its first Python parameters, in this order and with these names (def_conv2d).
struct Conv2dOperands {
  py::array input, weight;
  py::object bias;
  std::pair<int64_t, int64_t> stride, padding, dilation;
  int64_t groups;
  double input_scale;
  int32_t input_zero_point;
  py::array weight_scale;
};

namespace detail {
// The function pybind11 binds for def_conv2d: the Conv2dOperands as separate parameters, then
// body's own (Rest), deduced from body's call operator.
template <class Body, class R, class... Rest>
auto conv2d_entry(Body body, R (Body::*)(const Conv2dOperands&, Rest...) const) {
  return [body](py::array input, py::array weight, py::object bias, std::pair<int64_t, int64_t> stride,
                std::pair<int64_t, int64_t> padding, std::pair<int64_t, int64_t> dilation, int64_t groups,
                double input_scale, int32_t input_zero_point, py::array weight_scale, Rest... rest) -> R {
    return body(Conv2dOperands{std::move(input), std::move(weight), std::move(bias), stride, padding, dilation,
                               groups, input_scale, input_zero_point, std::move(weight_scale)},
                std::forward<Rest>(rest)...);
  };
}
}  // namespace detail

// Defines _core.<name>(input, weight, bias, stride, padding, dilation, groups, input_scale,
// input_zero_point, weight_scale, <body's own parameters>): body(const Conv2dOperands&, rest...)
// runs it; `extra` names body's own parameters (py::arg) and ends with the docstring.
template <class Body, class... Extra>
void def_conv2d(py::module_& m, const char* name, Body body, const Extra&... extra) {
  m.def(name, detail::conv2d_entry(body, &Body::operator()), py::arg("input"), py::arg("weight"), py::arg("bias"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("input_scale"),
        py::arg("input_zero_point"), py::arg("weight_scale"), extra...);
}

// What a prepared-conv holder keeps besides the conv: the weight it reads (kept alive) and
// the NHWC input shape it was prepared for (def_prepared_runs checks inputs against it). The
// base of fbgemm's PreparedConv2d and oneDNN's OnednnConv2d, _core.PreparedConv in Python
// (def_prepared_conv_class: the properties they share).
struct PreparedInput {
  py::array weight;
  int64_t N = 0, H = 0, W = 0, C = 0;
  PreparedInput() = default;
  PreparedInput(PreparedInput&&) = default;
  PreparedInput& operator=(PreparedInput&&) = default;
  virtual ~PreparedInput() = default;
  // the bytes of the packed weights (and their per-channel constants)
  virtual size_t packed_bytes() const = 0;
  void keep(const py::array& w, const qref::Conv2dShape& s) {
    weight = w;
    N = s.N;
    H = s.H;
    W = s.W;
    C = s.C;
  }
};

// Registers _core.PreparedConv (PreparedInput) with the properties every prepared conv2d has;
// register_common calls it before the engines register their holder types on top of it.
inline void def_prepared_conv_class(py::module_& m) {
  py::class_<PreparedInput>(m, "PreparedConv",
                            "A conv2d with its weights packed once (conv2d_prepare, onednn_conv2d_prepare); "
                            "run it with conv2d_run.")
      .def_property_readonly("packed_bytes", &PreparedInput::packed_bytes)
      .def_property_readonly("input_shape_nhwc",
                             [](const PreparedInput& h) { return py::make_tuple(h.N, h.H, h.W, h.C); });
}

// conv2d_run, conv2d_run_into and prepared_output_shape for one prepared-conv holder type H
// (fbgemm's PreparedConv2d and oneDNN's OnednnConv2d share them as overloads: same checks,
// same calls, through H::shape() and H::run()). The run_into form writes into memory the
// caller owns (the torch bridge passes the data pointer of a channels_last quint8 tensor it
// just allocated, so the output is not copied into a new tensor afterwards: that copy, with
// the fresh allocation's page faults, cost 0.1-0.25 ms on 784 KB outputs).
template <class H>
void def_prepared_runs(py::module_& m) {
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
        const qref::Conv2dShape& s = h.shape();
        py::array_t<uint8_t> out({s.N, s.OH, s.OW, s.O});
        uint8_t* o = out.mutable_data();
        {
          ReleaseGil release;
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
        const qref::Conv2dShape& s = h.shape();
        if (out_bytes != s.N * s.OH * s.OW * s.O || (out_bytes > 0 && out_address == 0))
          throw py::value_error("_core: conv2d_run_into needs N*OH*OW*O output bytes");
        uint8_t* o = reinterpret_cast<uint8_t*>(out_address);
        ReleaseGil release;
        h.run(in, o, threads);
      },
      py::arg("prepared"), py::arg("input"), py::arg("out_address"), py::arg("out_bytes"), py::arg("threads"),
      "Run a prepared conv2d (conv2d_prepare or onednn_conv2d_prepare) into NHWC memory at out_address "
      "(N*OH*OW*O bytes, kept alive by the caller).");
  m.def(
      "prepared_output_shape",
      [](const H& h) {
        const qref::Conv2dShape& s = h.shape();
        return py::make_tuple(s.N, s.OH, s.OW, s.O);
      },
      py::arg("prepared"), "(N, OH, OW, O) of a prepared conv2d's NHWC output.");
}

}  // namespace qref_bindings
