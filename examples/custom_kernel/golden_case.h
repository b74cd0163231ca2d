// Reader for qref golden cases (qref.export / `qref export`), for C++ testbenches.
//
// A case directory holds params.txt (scalars; floats as float32 hex bits) and
// bin/<name>.bin: a 32-byte little-endian header ("QREF", uint16 version 1,
// uint8 dtype 1=u8 2=i8 3=i32 4=f32, uint8 ndim, uint32 dims[4], uint64 bytes)
// then the array, C order, little-endian. Layouts: input NHWC, weight OHWI,
// output/acc/raw/y NHWC (see BIN_HEADER in python/qref/export.py).
// This file assumes a little-endian host (x86, Arm).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "qref/reference.h"

namespace golden {

struct Array {
  int dtype = 0, ndim = 0;
  uint32_t dims[4] = {1, 1, 1, 1};
  std::vector<unsigned char> bytes;
  template <class T>
  std::vector<T> as() const {
    std::vector<T> v(bytes.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
  }
};

inline Array read_bin(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  unsigned char h[32];
  if (std::fread(h, 1, 32, f) != 32 || std::memcmp(h, "QREF", 4) != 0) {
    std::fclose(f);
    throw std::runtime_error(path + ": not a qref binary");
  }
  Array a;
  a.dtype = h[6];
  a.ndim = h[7];
  std::memcpy(a.dims, h + 8, 16);
  uint64_t size = 0;
  std::memcpy(&size, h + 24, 8);
  a.bytes.resize(size);
  const size_t got = size ? std::fread(a.bytes.data(), 1, size, f) : 0;
  std::fclose(f);
  if (got != size) throw std::runtime_error(path + ": truncated");
  return a;
}

inline void write_bin(const std::string& path, int dtype, int ndim, const uint32_t dims[4], const void* data,
                      uint64_t size) {
  unsigned char h[32] = {'Q', 'R', 'E', 'F', 1, 0, static_cast<unsigned char>(dtype),
                         static_cast<unsigned char>(ndim)};
  std::memcpy(h + 8, dims, 16);
  std::memcpy(h + 24, &size, 8);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fwrite(h, 1, 32, f);
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
}

inline float hex_to_float(const std::string& s) {
  const uint32_t bits = static_cast<uint32_t>(std::strtoul(s.c_str(), nullptr, 16));
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}

// One conv test case: operands, parameters and the expected (torch/fbgemm) output.
struct Case {
  std::map<std::string, std::string> params;
  qref::ref::ConvArgs args;  // pointers below point into this object: do not copy a Case
  std::vector<uint8_t> input, output;
  std::vector<int8_t> weight;
  std::vector<float> bias, weight_scale;
  std::vector<int32_t> weight_zero_point;
  uint32_t out_dims[4] = {1, 1, 1, 1};
  int64_t p(const char* k) const { return std::stoll(params.at(k)); }
  size_t output_size() const { return output.size(); }
};

inline void load(const std::string& dir, Case& c) {
  FILE* f = std::fopen((dir + "/params.txt").c_str(), "r");
  if (!f) throw std::runtime_error("cannot open " + dir + "/params.txt");
  char k[128], v[128];
  while (std::fscanf(f, "%127s %127s", k, v) == 2) c.params[k] = v;
  std::fclose(f);
  c.input = read_bin(dir + "/bin/input.bin").as<uint8_t>();
  c.weight = read_bin(dir + "/bin/weight.bin").as<int8_t>();
  Array out = read_bin(dir + "/bin/output.bin");
  std::memcpy(c.out_dims, out.dims, sizeof(c.out_dims));
  c.output = out.as<uint8_t>();
  c.weight_scale = read_bin(dir + "/bin/weight_scale.bin").as<float>();
  c.weight_zero_point = read_bin(dir + "/bin/weight_zero_point.bin").as<int32_t>();
  if (c.p("has_bias")) c.bias = read_bin(dir + "/bin/bias.bin").as<float>();
  qref::Conv2dShape& s = c.args.shape;
  s.N = c.p("N"); s.C = c.p("C"); s.H = c.p("H"); s.W = c.p("W");
  s.O = c.p("O"); s.KH = c.p("KH"); s.KW = c.p("KW");
  s.stride_h = c.p("stride_h"); s.stride_w = c.p("stride_w");
  s.pad_h = c.p("pad_h"); s.pad_w = c.p("pad_w");
  s.dilation_h = c.p("dilation_h"); s.dilation_w = c.p("dilation_w");
  s.groups = c.p("groups");
  s.finalize();
  c.args.input_scale = hex_to_float(c.params.at("input_scale"));
  c.args.input_zero_point = static_cast<int32_t>(c.p("input_zero_point"));
  c.args.output_scale = hex_to_float(c.params.at("output_scale"));
  c.args.output_zero_point = static_cast<int32_t>(c.p("output_zero_point"));
  c.args.per_channel = c.p("per_channel") != 0;
  c.args.relu = c.p("relu") != 0;
  c.args.saturate = c.p("saturate") != 0;
  c.args.weight_scale = c.weight_scale.data();
  c.args.weight_zero_point = c.weight_zero_point.data();
  c.args.bias = c.bias.empty() ? nullptr : c.bias.data();
}

}  // namespace golden
