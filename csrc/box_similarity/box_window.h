// Which embedding pixels lie inside a box: pixel (y, x) of a map with stride s stands for the
// image point ((x + 0.5) * s, (y + 0.5) * s); it is inside box (x1, y1, x2, y2) when
// x1 <= (x + 0.5) * s <= x2 and y1 <= (y + 0.5) * s <= y2 (both edges included, in double).
// A box with a NaN coordinate contains nothing; (-inf, -inf, inf, inf) contains everything.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace panoptic_ops {

#if defined(__CUDACC__)
#define PANOPTIC_HD __host__ __device__
#else
#define PANOPTIC_HD
#endif

PANOPTIC_HD inline bool inside(double lo, double hi, int64_t i, double stride) {
  const double c = (static_cast<double>(i) + 0.5) * stride;
  return lo <= c && c <= hi;
}

// Half-open index range [first, last) of the pixels of a length-n axis inside [lo, hi].
inline void axis_range(double lo, double hi, int64_t n, double stride, int64_t* first, int64_t* last) {
  *first = *last = 0;
  if (std::isnan(lo) || std::isnan(hi) || n == 0 || !(lo <= hi)) return;
  double f = std::ceil(lo / stride - 0.5), l = std::floor(hi / stride - 0.5);
  f = std::clamp(f, 0.0, static_cast<double>(n));
  l = std::clamp(l, -1.0, static_cast<double>(n - 1));
  int64_t a = static_cast<int64_t>(f), b = static_cast<int64_t>(l) + 1;
  // The divisions above may round; settle the edges with the exact test.
  while (a > 0 && inside(lo, hi, a - 1, stride)) --a;
  while (a < n && !inside(lo, hi, a, stride)) ++a;
  while (b < n && inside(lo, hi, b, stride)) ++b;
  while (b > a && !inside(lo, hi, b - 1, stride)) --b;
  *first = a;
  *last = std::max(a, b);
}

}  // namespace panoptic_ops
