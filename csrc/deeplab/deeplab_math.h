// The arithmetic and the final paint of the Panoptic-DeepLab ops, which must match bit for bit
// between the CPU kernels (deeplab.cpp) and the CUDA kernels (deeplab_kernel.cu), written once as
// host-device functions (as box_similarity/box_window.h). Both builds keep every multiply and add
// separately rounded (-ffp-contract=off, nvcc -fmad=false). No torch header: the .cu includes it.
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

// The final paint of merge_semantic_and_instance for one pixel. `instance` is the index of the
// pixel's instance when it is a thing pixel, else -1; `ins_id` its instance id (0 = none) and
// `class_index` the index of its class. A thing pixel takes its instance's panoptic id; a pixel
// of no instance takes its class' stuff id when that stuff region survived (stuff_keep); the
// rest (a non-thing pixel inside an instance, a dropped or thing class outside) is void_label.
PANOPTIC_DEEPLAB_HD inline int64_t painted(int64_t instance, int64_t ins_id, int64_t class_index,
                                           const int64_t* instance_value, const int64_t* stuff_value,
                                           const uint8_t* stuff_keep, int64_t void_label) {
  if (instance >= 0) return instance_value[instance];
  if (ins_id == 0 && stuff_keep[class_index]) return stuff_value[class_index];
  return void_label;
}

}  // namespace panoptic_ops::deeplab_math
