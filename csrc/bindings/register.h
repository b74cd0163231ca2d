// qref bindings: one registration function per engine, called by module.cc.
#pragma once

#include <pybind11/pybind11.h>

namespace qref_bindings {

void register_common(pybind11::module_& m);  // common.cc: CPU features, kernels, threads, layouts
void register_fbgemm(pybind11::module_& m);  // fbgemm.cc: fbgemm's conv2d / conv_nd / quantize
void register_onednn(pybind11::module_& m);  // onednn.cc: oneDNN's conv2d / deconvolution
void register_aten(pybind11::module_& m);    // aten.cc: ATen's quantized non-conv ops
void register_layout(pybind11::module_& m);  // layout.cc: the layer functions' prepared-weight cache helpers
void register_mlas(pybind11::module_& m);    // mlas.cc: ONNX Runtime's MLAS int8 arithmetic
void register_pt2e(pybind11::module_& m);    // pt2e.cc: torch.compile's PT2E int8 program
void register_qnnpack(pybind11::module_& m);  // qnnpack.cc: torch's QNNPACK engine

}  // namespace qref_bindings
