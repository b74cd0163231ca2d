// pybind11 bindings of qref/pt2e (torch.compile's PT2E int8 program: oneDNN post-ops and
// inductor's quantize / dequantize). python/qref/pt2e/ validates for users; the checks here keep a
// direct _core caller in bounds. The GIL is released around every loop.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "qref/pt2e/floatops.h"
#include "qref/pt2e/pt2e.h"
#include "checks.h"
#include "register.h"

namespace py = pybind11;

namespace {

void need(bool ok, const std::string& what) {
  if (!ok) throw py::value_error("_core: " + what);
}

qref::OnednnEltwise eltwise_kind(const std::string& s) {
  if (s == "none") return qref::OnednnEltwise::none;
  if (s == "relu") return qref::OnednnEltwise::relu;
  if (s == "hardtanh") return qref::OnednnEltwise::hardtanh;
  if (s == "hardswish") return qref::OnednnEltwise::hardswish;
  if (s == "gelu_erf") return qref::OnednnEltwise::gelu_erf;
  if (s == "gelu_tanh") return qref::OnednnEltwise::gelu_tanh;
  if (s == "swish") return qref::OnednnEltwise::swish;
  throw py::value_error(
      "_core: eltwise must be 'none', 'relu', 'hardtanh', 'hardswish', 'gelu_erf', 'gelu_tanh' or 'swish', got '" +
      s + "'");
}

py::array pt2e_postops(const py::array& A, const py::array& wscale, const std::optional<py::array>& bias,
                       const std::optional<py::array>& other, double src_scale, bool combined, double sum_scale,
                       int64_t sum_zp, const std::string& eltwise, double alpha, double beta,
                       const std::string& out_dtype, double out_scale, int64_t out_zp,
                       const std::string& impl, bool sum_fma) {
  const float* a = qref_bindings::checked_ptr<float>(A, "A", 2, "float32");
  const int64_t M = A.shape(0), O = A.shape(1);
  const float* ws = qref_bindings::checked_ptr<float>(wscale, "wscale", 1, "float32");
  need(wscale.shape(0) == O, "wscale must have A.shape[1] entries");
  const float* b = nullptr;
  if (bias) {
    b = qref_bindings::checked_ptr<float>(*bias, "bias", 1, "float32");
    need(bias->shape(0) == O, "bias must have A.shape[1] entries");
  }
  qref::OnednnPostOps p;
  p.src_scale = static_cast<float>(src_scale);
  p.combined = combined;
  p.has_bias = b != nullptr;
  p.eltwise = eltwise_kind(eltwise);
  p.alpha = static_cast<float>(alpha);
  p.beta = static_cast<float>(beta);
  if (impl == "avx512" || impl == "avx2") {
    p.avx512 = impl == "avx512";
  } else if (impl == "ref_matmul" || impl == "ref_conv") {
    p.ref = true;
    p.ref_zero_start = impl == "ref_matmul";
  } else {
    throw py::value_error("_core: impl must be 'avx512', 'avx2', 'ref_matmul' or 'ref_conv', got '" + impl + "'");
  }
  need(!(p.ref && out_dtype == "uint8"), "impl '" + impl + "' has no uint8 output");
  p.sum_fma = sum_fma;
  const void* oth = nullptr;
  bool other_u8 = false;
  if (other) {
    need(other->ndim() == 2 && other->shape(0) == M && other->shape(1) == O, "other must have A's shape");
    other_u8 = other->dtype().equal(py::dtype::of<uint8_t>());
    oth = other_u8 ? static_cast<const void*>(qref_bindings::checked_ptr<uint8_t>(*other, "other", 2, "uint8"))
                   : static_cast<const void*>(qref_bindings::checked_ptr<float>(*other, "other", 2, "float32"));
    p.sum = true;
    p.sum_scale = static_cast<float>(sum_scale);
    need(sum_zp >= 0 && sum_zp <= 255, "sum_zp must be in [0, 255]");
    p.sum_zp = static_cast<int32_t>(sum_zp);
  }
  py::array out;
  if (out_dtype == "uint8") {
    p.out = qref::OnednnOutType::u8;
    need(out_scale > 0 && std::isfinite(out_scale), "out_scale must be finite and > 0");
    need(out_zp >= 0 && out_zp <= 255, "out_zp must be in [0, 255]");
    p.inv = static_cast<float>(1.0 / out_scale);
    p.out_zp = static_cast<int32_t>(out_zp);
    out = py::array_t<uint8_t>({M, O});
  } else if (out_dtype == "float32") {
    p.out = qref::OnednnOutType::f32;
    out = py::array_t<float>({M, O});
  } else if (out_dtype == "bfloat16") {
    p.out = qref::OnednnOutType::bf16;
    out = py::array_t<uint16_t>({M, O});
  } else {
    throw py::value_error("_core: out_dtype must be 'uint8', 'float32' or 'bfloat16', got '" + out_dtype + "'");
  }
  void* o = out.mutable_data();
  {
    qref_bindings::ReleaseGil release;
    qref::pt2e_postops(a, M, O, ws, b, oth, other_u8, p, o);
  }
  return out;
}

py::array inductor_quantize(const py::array& x, double scale, int64_t zero_point, int64_t quant_min,
                            int64_t quant_max) {
  const float* px = qref_bindings::checked_ptr<float>(x, "x", -1, "float32");
  need(scale > 0 && std::isfinite(scale), "scale must be finite and > 0");
  need(0 <= quant_min && quant_min <= quant_max && quant_max <= 255, "need 0 <= quant_min <= quant_max <= 255");
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  py::array_t<uint8_t> out(shape);
  uint8_t* po = out.mutable_data();
  const int64_t n = x.size();
  {
    qref_bindings::ReleaseGil release;
    qref::inductor_quantize_array(px, n, scale, zero_point, quant_min, quant_max, po);
  }
  return out;
}

py::array inductor_dequantize(const py::array& q, double scale, int64_t zero_point) {
  const uint8_t* pq = qref_bindings::checked_ptr<uint8_t>(q, "q", -1, "uint8");
  std::vector<py::ssize_t> shape(q.shape(), q.shape() + q.ndim());
  py::array_t<float> out(shape);
  float* po = out.mutable_data();
  const int64_t n = q.size();
  {
    qref_bindings::ReleaseGil release;
    qref::inductor_dequantize_array(pq, n, scale, zero_point, po);
  }
  return out;
}

}  // namespace

namespace qref_bindings {

void register_pt2e_float(py::module_& m);  // below: inductor's float reductions

void register_pt2e(py::module_& m) {
  register_pt2e_float(m);
  m.def("pt2e_postops", &pt2e_postops, py::arg("A"), py::arg("wscale"), py::arg("bias"), py::arg("other"),
        py::arg("src_scale"), py::arg("combined"), py::arg("sum_scale"), py::arg("sum_zp"), py::arg("eltwise"),
        py::arg("alpha"), py::arg("beta"), py::arg("out_dtype"), py::arg("out_scale"), py::arg("out_zp"),
        py::arg("impl") = "avx512", py::arg("sum_fma") = false,
        "oneDNN's post-op chain (PT2E int8 ops) over the compensated sums A[M][O]; impl: the oneDNN kernel's "
        "eltwise ('avx512' or 'avx2' JIT injector; 'ref_matmul' or 'ref_conv' reference primitive), sum_fma fuses "
        "a sum scale other than 1 into the add (AVX2 gemm)");
  m.def("inductor_quantize", &inductor_quantize, py::arg("x"), py::arg("scale"), py::arg("zero_point"),
        py::arg("quant_min"), py::arg("quant_max"), "inductor's generated quantize_per_tensor (float32 -> uint8)");
  m.def("inductor_dequantize", &inductor_dequantize, py::arg("q"), py::arg("scale"), py::arg("zero_point"),
        "inductor's generated dequantize_per_tensor (uint8 -> float32)");
}

}  // namespace qref_bindings

// ---- inductor's float reductions between the int8 ops (csrc/qref/pt2e/floatops.h)

namespace {

py::array inductor_sum_rows(const py::array& x, int lanes) {
  const float* px = qref_bindings::checked_ptr<float>(x, "x", 2, "float32");
  need(lanes >= 1 && lanes <= 64 && (lanes & (lanes - 1)) == 0, "lanes must be a power of two in [1, 64], got " +
                                                                     std::to_string(lanes));
  const int64_t rows = x.shape(0), n = x.shape(1);
  py::array_t<float> out(rows);
  float* po = out.mutable_data();
  {
    qref_bindings::ReleaseGil release;
    qref::inductor_sum_rows(px, rows, n, lanes, po);
  }
  return out;
}

py::array inductor_sum_strided(const py::array& x) {
  const float* px = qref_bindings::checked_ptr<float>(x, "x", 3, "float32");
  const int64_t outer = x.shape(0), n = x.shape(1), inner = x.shape(2);
  py::array_t<float> out({outer, inner});
  float* po = out.mutable_data();
  {
    qref_bindings::ReleaseGil release;
    qref::inductor_sum_strided(px, outer, n, inner, po);
  }
  return out;
}

py::tuple inductor_welford_rows(const py::array& x, int lanes) {
  const float* px = qref_bindings::checked_ptr<float>(x, "x", 2, "float32");
  need(lanes == 8 || lanes == 16, "lanes must be 8 (AVX2) or 16 (AVX-512), got " + std::to_string(lanes));
  const int64_t rows = x.shape(0), n = x.shape(1);
  need(n <= 4096 * lanes, "x.shape[1] must be at most 4096 * lanes (one Welford chunk per lane), got " +
                              std::to_string(n));
  py::array_t<float> mean(rows), m2(rows);
  float* pm = mean.mutable_data();
  float* p2 = m2.mutable_data();
  {
    qref_bindings::ReleaseGil release;
    qref::inductor_welford_rows(px, rows, n, lanes, pm, p2);
  }
  return py::make_tuple(mean, m2);
}

}  // namespace

namespace qref_bindings {

void register_pt2e_float(py::module_& m) {
  m.def("inductor_sum_rows", &inductor_sum_rows, py::arg("x"), py::arg("lanes"),
        "inductor's vectorized horizontal sum of each row of x[rows][n] (float32) with `lanes` lanes");
  m.def("inductor_sum_strided", &inductor_sum_strided, py::arg("x"),
        "inductor's vertical sum over axis 1 of x[outer][n][inner] (float32): sequential per output");
  m.def("inductor_welford_rows", &inductor_welford_rows, py::arg("x"), py::arg("lanes"),
        "inductor's vectorized Welford of each row of x[rows][n] (float32): (mean, m2)");
}

}  // namespace qref_bindings
