// Argument checks of the Panoptic-DeepLab ops, written once for the CPU glue (deeplab.cpp) and
// the CUDA glue (deeplab_cuda.cpp), so that both raise the same message. The schema fixes the
// argument types; these check what it cannot (ranks, shapes, dtypes, value ranges) for direct
// torch.ops callers. The Python wrappers (panoptic_ops/deeplab.py) test the same conditions first
// to raise ValueError / TypeError naming the argument, as torchvision's wrappers do.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>

namespace panoptic_ops::deeplab_checks {

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_centers(const at::Tensor& center_heatmap, int64_t nms_kernel, std::optional<int64_t> top_k) {
  TORCH_CHECK(center_heatmap.dim() == 3 && center_heatmap.size(0) == 1,
              "center_heatmap must have shape [1, H, W], got ", center_heatmap.sizes());
  check_float(center_heatmap, "center_heatmap");
  TORCH_CHECK(nms_kernel >= 1 && nms_kernel % 2 == 1, "nms_kernel must be a positive odd integer, got ", nms_kernel);
  TORCH_CHECK(!top_k.has_value() || *top_k >= 1, "top_k must be None or >= 1, got ", top_k.value_or(0));
}

inline void check_offsets(const at::Tensor& offsets) {
  TORCH_CHECK(offsets.dim() == 3 && offsets.size(0) == 2, "offsets must have shape [2, H, W], got ", offsets.sizes());
  check_float(offsets, "offsets");
}

inline void check_group(const at::Tensor& center_points, const at::Tensor& offsets) {
  check_offsets(offsets);
  TORCH_CHECK(center_points.dim() == 2 && center_points.size(1) == 2 && center_points.scalar_type() == at::kLong,
              "center_points must be an int64 tensor of shape [K, 2], got ", center_points.scalar_type(), " ",
              center_points.sizes());
}

inline void check_merge(const at::Tensor& sem_seg, const at::Tensor& ins_seg, const at::Tensor& semantic_thing_seg) {
  TORCH_CHECK(sem_seg.sizes() == ins_seg.sizes() && sem_seg.sizes() == semantic_thing_seg.sizes(),
              "sem_seg, ins_seg and semantic_thing_seg must have one shape, got ", sem_seg.sizes(), ", ",
              ins_seg.sizes(), " and ", semantic_thing_seg.sizes());
}

inline void check_panoptic(const at::Tensor& sem_seg, const at::Tensor& center_heatmap, const at::Tensor& offsets,
                           int64_t nms_kernel, std::optional<int64_t> top_k,
                           const std::optional<at::Tensor>& foreground_mask) {
  TORCH_CHECK(sem_seg.dim() == 3 && sem_seg.size(0) == 1, "sem_seg must have shape [1, H, W], got ", sem_seg.sizes());
  check_centers(center_heatmap, nms_kernel, top_k);
  TORCH_CHECK(center_heatmap.sizes().slice(1) == sem_seg.sizes().slice(1),
              "center_heatmap must have shape [1, H, W] matching sem_seg, got ", center_heatmap.sizes());
  check_offsets(offsets);
  TORCH_CHECK(offsets.sizes().slice(1) == sem_seg.sizes().slice(1),
              "offsets must have shape [2, H, W] matching sem_seg, got ", offsets.sizes());
  TORCH_CHECK(!foreground_mask.has_value() || foreground_mask->numel() == sem_seg.numel(),
              "foreground_mask must have the H * W = ", sem_seg.numel(), " pixels of sem_seg, got ",
              foreground_mask.has_value() ? foreground_mask->numel() : 0);
}

}  // namespace panoptic_ops::deeplab_checks
