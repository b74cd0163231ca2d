// qref: inductor's float reductions (floatops.h).
#include "qref/pt2e/floatops.h"

namespace qref {

namespace {

float horizontal_sum(const float* x, int64_t n, int lanes, float* v) {
  for (int j = 0; j < lanes; ++j) v[j] = 0.f;
  int64_t k = 0;
  for (; k + lanes <= n; k += lanes) {
    for (int j = 0; j < lanes; ++j) v[j] = v[j] + x[k + j];
  }
  // masked tail: lanes < n - k add, the others keep their value
  for (int j = 0; k + j < n; ++j) v[j] = v[j] + x[k + j];
  // at::vec::vec_reduce_all: pair lane i with lane i ^ s, halving s each step
  for (int s = lanes / 2; s >= 1; s /= 2) {
    float w[64];
    for (int i = 0; i < lanes; ++i) w[i] = v[i] + v[i ^ s];
    for (int i = 0; i < lanes; ++i) v[i] = w[i];
  }
  const float acc = 0.f;
  return acc + v[0];
}

struct Wf {
  float mean = 0.f, m2 = 0.f, weight = 0.f;
};

// welford_combine(a, b) per lane (a.index, b.index > 0); aw / bw: the weights used
Wf combine(const Wf& a, const Wf& b, float aw, float bw) {
  float delta = b.mean - a.mean;
  if (a.mean == b.mean) delta = 0.f;  // the vector code's blendv guard
  const float w = aw + bw;
  float r = bw / w;
  if (w == 0.f) r = 0.f;
  Wf out;
  out.mean = a.mean + delta * r;
  const float dd = delta * delta;
  const float dda = dd * aw;
  const float ab = a.m2 + b.m2;
  out.m2 = ab + dda * r;
  out.weight = w;
  return out;
}

// welford_vec_reduce_all with x86's vec_shuffle_down; returns lane 0 and its index through *index
Wf vec_reduce(Wf* v, int lanes, uint64_t* index) {
  bool use_index = true;
  for (int i = 0; i < lanes; ++i) use_index = use_index && v[i].weight == static_cast<float>(*index);
  for (int s = 1; s < lanes; s *= 2) {
    Wf sh[16];
    for (int i = 0; i < lanes; ++i) {
      int src;
      if (s == 1) {
        src = (i & ~3) + ((i & 3) < 2 ? 3 : 1);
      } else if (s == 2) {
        src = (i & ~3) + 2;
      } else {
        src = (i & ~(2 * s - 1)) + s;  // lane 4 of each 8 (s = 4), lane 8 (s = 8)
      }
      sh[i] = v[src];
    }
    const float idx = static_cast<float>(*index);
    Wf nv[16];
    for (int i = 0; i < lanes; ++i) {
      nv[i] = use_index ? combine(v[i], sh[i], idx, idx) : combine(v[i], sh[i], v[i].weight, sh[i].weight);
    }
    for (int i = 0; i < lanes; ++i) v[i] = nv[i];
    *index *= 2;
  }
  *index = static_cast<uint64_t>(v[0].weight);
  return v[0];
}

}  // namespace

void inductor_welford_rows(const float* x, int64_t rows, int64_t n, int lanes, float* mean, float* m2) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * n;
    const int64_t c = n / lanes, t = n % lanes;
    Wf v[16];
    for (int64_t k = 0; k < c; ++k) {
      const float recp = static_cast<float>(1.0 / static_cast<double>(k + 1));
      for (int j = 0; j < lanes; ++j) {
        const float d = p[k * lanes + j];
        const float delta = d - v[j].mean;
        const float nm = v[j].mean + delta * recp;
        const float nd = d - nm;
        v[j].m2 = v[j].m2 + delta * nd;
        v[j].mean = nm;
        v[j].weight = v[j].weight + 1.f;
      }
    }
    Wf tl[16];
    for (int j = 0; j < t; ++j) {
      const float d = p[c * lanes + j];
      const float delta = d - 0.f;
      const float nm = 0.f + delta * 1.f;
      tl[j].m2 = 0.f + delta * (d - nm);
      tl[j].mean = nm;
      tl[j].weight = 1.f;
    }
    bool have = false;
    Wf acc;
    if (t > 0) {
      uint64_t idx = 1;
      acc = vec_reduce(tl, lanes, &idx);
      have = idx != 0;
    }
    if (c > 0) {
      uint64_t idx = static_cast<uint64_t>(c);
      const Wf b = vec_reduce(v, lanes, &idx);
      acc = have ? combine(acc, b, acc.weight, b.weight) : b;
    }
    mean[r] = acc.mean;
    m2[r] = acc.m2;
  }
}

void inductor_sum_rows(const float* x, int64_t rows, int64_t n, int lanes, float* out) {
  float v[64];
  for (int64_t r = 0; r < rows; ++r) out[r] = horizontal_sum(x + r * n, n, lanes, v);
}

void inductor_sum_strided(const float* x, int64_t outer, int64_t n, int64_t inner, float* out) {
  for (int64_t o = 0; o < outer; ++o) {
    float* acc = out + o * inner;
    for (int64_t i = 0; i < inner; ++i) acc[i] = 0.f;
    for (int64_t k = 0; k < n; ++k) {
      const float* row = x + (o * n + k) * inner;
      for (int64_t i = 0; i < inner; ++i) acc[i] = acc[i] + row[i];
    }
  }
}

}  // namespace qref
