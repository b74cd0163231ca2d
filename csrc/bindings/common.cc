// qref bindings: what every engine shares (CPU features, the kernel table, threads, layout
// conversions).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "checks.h"
#include "qref/common/transpose.h"
#include "qref/gemm/api.h"
#include "register.h"

namespace qref_bindings {

using namespace qref;

namespace {
py::dict cpu_features_dict() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  for (const CpuFeatureName& k : kCpuFeatureNames) d[k.name] = f.*k.flag;
  return d;
}
}  // namespace

void register_common(py::module_& m) {
  def_prepared_conv_class(m);  // before the engines' prepared conv2d types (fbgemm.cc, onednn.cc)
  m.def("cpu_features", &cpu_features_dict, "CPU features qref and fbgemm look at.");
  m.def("kernels", []() { return usable_kernel_names(true); }, "Usable kernels, best first.");
  m.def("compiled_kernels", []() { return usable_kernel_names(false); }, "Kernels compiled in.");
  m.def("default_threads", &default_threads);
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
        const int64_t src_shape[4] = {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
        std::vector<py::ssize_t> shape = to_last
            ? std::vector<py::ssize_t>{a.shape(0), a.shape(2), a.shape(3), a.shape(1)}
            : std::vector<py::ssize_t>{a.shape(0), a.shape(3), a.shape(1), a.shape(2)};
        py::array out(u8 ? py::dtype::of<uint8_t>() : py::dtype::of<int8_t>(), shape);  // canonical dtype
        const uint8_t* src = static_cast<const uint8_t*>(a.data());
        uint8_t* dst = static_cast<uint8_t*>(out.mutable_data());
        {
          ReleaseGil release;
          qref::channels_transpose(src, src_shape, to_last, dst);
        }
        return out;
      },
      py::arg("a"), py::arg("to_last"));
}

}  // namespace qref_bindings
