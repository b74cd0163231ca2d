// qref bindings: helpers of the Python layer's prepared-weight cache (python/qref/layers/prep_cache.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>

#include "checks.h"
#include "register.h"

namespace qref_bindings {

void register_layout(py::module_& m) {
  m.def(
      "bytes_equal",
      [](py::array a, py::array b) {
        // Two C-contiguous arrays of the same byte count: memcmp, the content check that lets a
        // cached prepared weight be reused (never a hash: equal hashes do not mean equal bytes).
        if (!(a.flags() & py::array::c_style) || !(b.flags() & py::array::c_style))
          throw py::value_error("_core: bytes_equal needs C-contiguous arrays");
        const size_t n = static_cast<size_t>(a.nbytes());
        if (n != static_cast<size_t>(b.nbytes())) return false;
        if (n == 0) return true;
        const void* pa = a.data();
        const void* pb = b.data();
        bool eq;
        {
          ReleaseGil release;
          eq = std::memcmp(pa, pb, n) == 0;
        }
        return eq;
      },
      py::arg("a"), py::arg("b"), "Whether two C-contiguous arrays hold the same bytes (memcmp).");
  m.def(
      "bytes_equal_at",
      [](uintptr_t address, int64_t nbytes, py::array b) {
        // The same for live memory the caller owns and keeps alive (a contiguous torch tensor's
        // data_ptr(), whose byte count the caller computed), so no array view is built per call.
        if (!(b.flags() & py::array::c_style)) throw py::value_error("_core: bytes_equal_at needs a C-contiguous array");
        if (nbytes < 0) throw py::value_error("_core: bytes_equal_at: nbytes must be >= 0");
        if (static_cast<int64_t>(b.nbytes()) != nbytes) return false;
        if (nbytes == 0) return true;
        if (address == 0) throw py::value_error("_core: bytes_equal_at: null address");
        const void* pb = b.data();
        bool eq;
        {
          ReleaseGil release;
          eq = std::memcmp(reinterpret_cast<const void*>(address), pb, static_cast<size_t>(nbytes)) == 0;
        }
        return eq;
      },
      py::arg("address"), py::arg("nbytes"), py::arg("b"),
      "Whether nbytes of live memory at address equal a C-contiguous array's bytes (memcmp).");
}

}  // namespace qref_bindings
