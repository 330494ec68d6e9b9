// Argument checks of the Panoptic-DeepLab ops, shared by the CPU glue (deeplab.cpp) and the CUDA
// glue (deeplab_cuda.cpp). The label arguments' int64 overflow bound depends on the values of
// sem_seg and stays in panoptic_ops/deeplab.py.
#pragma once

#include <optional>
#include <utility>

#include "common/checks.h"

namespace panoptic_ops::deeplab_checks {

using checks::kAny;

inline void check_window(int64_t nms_kernel, std::optional<int64_t> top_k) {
  TORCH_CHECK_VALUE(nms_kernel >= 1 && nms_kernel % 2 == 1,
                    "nms_kernel must be a positive odd integer (max-pool window), got ", nms_kernel);
  TORCH_CHECK_VALUE(!top_k.has_value() || *top_k >= 1, "top_k must be None or a positive integer, got ",
                    top_k.value_or(0));
}

inline void check_centers(const at::Tensor& center_heatmap, int64_t nms_kernel, std::optional<int64_t> top_k) {
  checks::check_shape(center_heatmap, "center_heatmap", {1, kAny, kAny});
  checks::check_float(center_heatmap, "center_heatmap");
  check_window(nms_kernel, top_k);
}

inline void check_group(const at::Tensor& center_points, const at::Tensor& offsets) {
  checks::check_shape(center_points, "center_points", {kAny, 2});
  checks::check_dtype(center_points, "center_points", {at::kLong});
  checks::check_shape(offsets, "offsets", {2, kAny, kAny});
  checks::check_float(offsets, "offsets");
  checks::check_same_device({{"center_points", &center_points}, {"offsets", &offsets}});
}

// The label arguments' ranges (the int64 bound of class * label_divisor + instance depends on the
// values of sem_seg and is checked in panoptic_ops/deeplab.py).
inline void check_labels(int64_t label_divisor, c10::IntArrayRef thing_ids) {
  TORCH_CHECK_VALUE(label_divisor >= 1, "label_divisor must lie in [1, 9223372036854775807], got ", label_divisor);
  for (const int64_t t : thing_ids) TORCH_CHECK_VALUE(t >= 0, "thing_ids must lie in [0, 2**63), got ", thing_ids);
}

// sem_seg: an integer map of shape [1, H, W]; returns (H, W).
inline std::pair<int64_t, int64_t> check_sem_seg(const at::Tensor& sem_seg) {
  checks::check_shape(sem_seg, "sem_seg", {1, kAny, kAny});
  checks::check_integer(sem_seg, "sem_seg");
  return {sem_seg.size(1), sem_seg.size(2)};
}

inline void check_merge(const at::Tensor& sem_seg, const at::Tensor& ins_seg, const at::Tensor& semantic_thing_seg,
                        int64_t label_divisor, c10::IntArrayRef thing_ids) {
  const auto [height, width] = check_sem_seg(sem_seg);
  checks::check_shape(ins_seg, "ins_seg", {1, height, width});
  checks::check_integer(ins_seg, "ins_seg");
  checks::check_shape(semantic_thing_seg, "semantic_thing_seg", {1, height, width});
  checks::check_mask(semantic_thing_seg, "semantic_thing_seg");
  checks::check_same_device(
      {{"sem_seg", &sem_seg}, {"ins_seg", &ins_seg}, {"semantic_thing_seg", &semantic_thing_seg}});
  check_labels(label_divisor, thing_ids);
}

inline void check_panoptic(const at::Tensor& sem_seg, const at::Tensor& center_heatmap, const at::Tensor& offsets,
                           int64_t label_divisor, c10::IntArrayRef thing_ids, int64_t nms_kernel,
                           std::optional<int64_t> top_k, const std::optional<at::Tensor>& foreground_mask) {
  const auto [height, width] = check_sem_seg(sem_seg);
  checks::check_shape(center_heatmap, "center_heatmap", {1, height, width});
  checks::check_float(center_heatmap, "center_heatmap");
  checks::check_shape(offsets, "offsets", {2, height, width});
  checks::check_float(offsets, "offsets");
  if (foreground_mask.has_value()) {
    checks::check_shape(*foreground_mask, "foreground_mask", {1, height, width});
    checks::check_mask(*foreground_mask, "foreground_mask");
  }
  checks::check_same_device({{"sem_seg", &sem_seg},
                             {"center_heatmap", &center_heatmap},
                             {"offsets", &offsets},
                             {"foreground_mask", checks::optional_ptr(foreground_mask)}});
  check_labels(label_divisor, thing_ids);
  check_window(nms_kernel, top_k);
}

}  // namespace panoptic_ops::deeplab_checks
