// qref: byte-matrix transposes for the channel layout conversions of the Python API
// (NCHW <-> NHWC, OIHW -> OHWI): numpy's generic transpose moves ~1 GB/s, which made the
// layout conversion of a numpy call cost more than its convolution.
#pragma once

#include <cstdint>

namespace qref {

// src: rows x cols bytes (row stride sstride) -> dst: cols x rows (row stride dstride).
void transpose_bytes(const uint8_t* src, int64_t sstride, uint8_t* dst, int64_t dstride, int64_t rows,
                     int64_t cols);

// A C-contiguous 4-D byte array: to_last (n, c, h, w) -> (n, h, w, c), else (n, h, w, c) ->
// (n, c, h, w). `shape` is the source's.
void channels_transpose(const uint8_t* src, const int64_t shape[4], bool to_last, uint8_t* dst);

}  // namespace qref
