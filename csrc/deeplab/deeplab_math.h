// The arithmetic of the Panoptic-DeepLab ops that must match bit for bit between the CPU
// kernels (deeplab.cpp) and the CUDA kernels (deeplab_kernel.cu), written once as host-device
// functions (as box_similarity/box_window.h). Both builds keep every multiply and add separately
// rounded (-ffp-contract=off, nvcc -fmad=false). No torch header: the .cu includes it.
#pragma once

#include <cmath>
#include <cstdint>

namespace panoptic_ops::deeplab_math {

#if defined(__CUDACC__)
#define PANOPTIC_DEEPLAB_HD __host__ __device__
#else
#define PANOPTIC_DEEPLAB_HD
#endif

template <typename T>
PANOPTIC_DEEPLAB_HD inline bool is_nan(T v) {
#if defined(__CUDA_ARCH__)
  return isnan(v);
#else
  return std::isnan(v);
#endif
}

template <typename T>
PANOPTIC_DEEPLAB_HD inline T square_root(T v) {
#if defined(__CUDA_ARCH__)
  return sqrt(v);
#else
  return std::sqrt(v);
#endif
}

// F.threshold(x, threshold, -1): values <= threshold (compared in the tensor's dtype) become -1.
template <typename T>
PANOPTIC_DEEPLAB_HD inline T thresholded(T value, T threshold) {
  return value <= threshold ? T(-1) : value;
}

// A window value m leaves `value` a peak (max-pool equality): m is no NaN and not larger.
template <typename T>
PANOPTIC_DEEPLAB_HD inline bool window_ok(T m, T value) {
  return !is_nan(m) && !(m > value);
}

// detectron2's argmin(torch.norm(center - (coord + offset))) over the centers offered in
// increasing index order, the distance being sqrt(dy*dy + dx*dx) in T with every operation
// rounded; ties go to the first center, and the first NaN distance decides (argmin returns it).
template <typename T>
struct Nearest {
  int64_t best = 0;
  T best_sq = T(0), best_dist = T(0);

  // Offer the i-th visited center (id k, offsets dy = center_y - loc_y, dx = center_x - loc_x);
  // false when the answer is decided (a NaN distance).
  PANOPTIC_DEEPLAB_HD bool offer(int64_t i, int64_t k, T dy, T dx) {
    const T dy2 = dy * dy;
    const T dx2 = dx * dx;
    const T sq = dy2 + dx2;
    if (i == 0) best = k;
    if (is_nan(sq)) {
      best = k;
      return false;
    }
    if (i == 0) {
      best_sq = sq;
      best_dist = square_root(sq);
    } else if (sq < best_sq) {
      // sqrt can round two different squares to one distance; then the first center wins.
      const T dist = square_root(sq);
      best_sq = sq;
      if (dist < best_dist) {
        best_dist = dist;
        best = k;
      }
    }
    return true;
  }
};

}  // namespace panoptic_ops::deeplab_math
