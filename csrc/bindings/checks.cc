// qref bindings: the shared argument checks (checks.h).
#include "checks.h"

#include <cmath>

namespace qref_bindings {

using namespace qref;

void check_range(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    throw py::value_error(std::string("_core: ") + name + "=" + std::to_string(v) + " is out of range (must be in [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "])");
  }
}

const void* int8_data(const py::array& a, const char* name, bool* s8) {
  const bool is_u8 = a.dtype().equal(py::dtype::of<uint8_t>());
  const bool is_s8 = a.dtype().equal(py::dtype::of<int8_t>());
  if (!is_u8 && !is_s8)
    throw py::type_error(std::string("_core: ") + name + " must be a uint8 or int8 array, got dtype " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string("_core: ") + name + " must be C-contiguous");
  *s8 = is_s8;
  return a.data();
}

void check_int8_zero_point(int64_t z, bool s8, const char* name) {
  if (s8 ? (z < -128 || z > 127) : (z < 0 || z > 255))
    throw py::value_error(std::string("_core: ") + name + " out of range for the dtype");
}

py::array new_int8_array(bool s8, const std::vector<py::ssize_t>& shape) {
  if (s8) return py::array_t<int8_t>(shape);
  return py::array_t<uint8_t>(shape);
}

// A scale fbgemm narrows to a normal, finite float32 (and whose reciprocal is
// finite), so no float conversion below is undefined.
void check_scale_value(const char* name, double v) {
  const double lo = static_cast<double>(std::numeric_limits<float>::min());
  const double hi = static_cast<double>(std::numeric_limits<float>::max());
  if (!(std::isfinite(v) && v >= lo && v <= hi)) {
    throw py::value_error(std::string("_core: ") + name + "=" + std::to_string(v) +
                          " is not a valid scale (must be a finite normal float32 > 0)");
  }
}

void check_weight_qparams(const py::array& weight_scale, const double* ws, const py::array& weight_zero_point,
                          const int32_t* wz, int64_t nq) {
  if (weight_scale.shape(0) != nq || weight_zero_point.shape(0) != nq)
    throw py::value_error("_core: weight_scale/weight_zero_point count mismatch (must be 1, or O when per_channel)");
  for (int64_t i = 0; i < nq; ++i) {
    check_scale_value("weight_scale[i]", ws[i]);
    check_range("weight_zero_point[i]", wz[i], -128, 127);
  }
}

// The optional float32 bias (O values; None gives null). `keep` holds the array
// until the kernel has run: bias.cast may have made a new one.
const float* checked_bias(const py::object& bias, int64_t O, py::array& keep) {
  if (bias.is_none()) return nullptr;
  keep = bias.cast<py::array>();
  const float* b = checked_ptr<float>(keep, "bias", 1, "float32");
  if (keep.shape(0) != O) throw py::value_error("_core: bias length mismatch");
  return b;
}

void check_zero_points(int32_t input_zero_point, int32_t output_zero_point) {
  if (input_zero_point < 0 || input_zero_point > 255 || output_zero_point < 0 || output_zero_point > 255)
    throw py::value_error("_core: zero point out of range");
}

// The looser scale checks of the oneDNN and N-d entry points (finite and > 0;
// their float conversions are defined for any such double).
void check_positive_scales(double input_scale, double output_scale) {
  if (!(std::isfinite(input_scale) && input_scale > 0 && std::isfinite(output_scale) && output_scale > 0))
    throw py::value_error("_core: scales must be finite and > 0");
}

void check_positive_weight_scales(const py::array& weight_scale, const double* ws, int64_t nq) {
  if (weight_scale.shape(0) != nq) throw py::value_error("_core: weight_scale count mismatch");
  for (py::ssize_t i = 0; i < weight_scale.shape(0); ++i)
    if (!(std::isfinite(ws[i]) && ws[i] > 0)) throw py::value_error("_core: weight scales must be finite and > 0");
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
  check_range("groups", groups, 1, kIntMax);
  check_range("stride[0]", stride.first, 1, kIntMax);
  check_range("stride[1]", stride.second, 1, kIntMax);
  check_range("padding[0]", padding.first, 0, kIntMax);
  check_range("padding[1]", padding.second, 0, kIntMax);
  check_range("dilation[0]", dilation.first, 1, kIntMax);
  check_range("dilation[1]", dilation.second, 1, kIntMax);
  for (int i = 0; i < 4; ++i) {
    check_range("input.shape[i]", input.shape(i), 0, kIntMax);
    check_range("weight.shape[i]", weight.shape(i), 0, kIntMax);
  }
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
  // Every factor is below 2^31, so the products are exact in double up to 2^53
  // and safely above the bounds otherwise.
  const double out_elems = static_cast<double>(s.N) * s.OH * s.OW * s.O;
  const double macs = static_cast<double>(s.N) * s.OH * s.OW * s.K();
  if (out_elems > static_cast<double>(kMaxElements) || macs > 0x1p62)
    throw py::value_error("_core: output too large (at most 2^40 elements and 2^62 multiply-adds)");
  return s;
}

}  // namespace qref_bindings
