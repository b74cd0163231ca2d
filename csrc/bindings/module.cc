// qref: the _core extension module. Each engine registers its own bindings, defined in
// one file each (common.cc, fbgemm.cc, onednn.cc, aten.cc); adding an engine is one register call here
// and its file in CMakeLists.txt.
#include <pybind11/pybind11.h>

#include "register.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "qref compiled core: bit-exact PyTorch quantized int8 arithmetic (fbgemm, oneDNN and ATen engines)";
  qref_bindings::register_common(m);
  qref_bindings::register_fbgemm(m);
  qref_bindings::register_onednn(m);
  qref_bindings::register_aten(m);
  qref_bindings::register_layout(m);
  qref_bindings::register_mlas(m);
  qref_bindings::register_pt2e(m);
  qref_bindings::register_qnnpack(m);
}
