// Panoptic-DeepLab post-processing: shared declarations of the CPU implementation, used by the
// CPU registrations and by the batched op.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <vector>

namespace panoptic_ops {

at::Tensor find_instance_center_cpu(const at::Tensor& center_heatmap, double threshold, int64_t nms_kernel,
                                    std::optional<int64_t> top_k);
at::Tensor group_pixels_cpu(const at::Tensor& center_points, const at::Tensor& offsets);
at::Tensor merge_semantic_and_instance_cpu(const at::Tensor& sem_seg, const at::Tensor& ins_seg,
                                           const at::Tensor& semantic_thing_seg, int64_t label_divisor,
                                           at::IntArrayRef thing_ids, int64_t stuff_area, int64_t void_label);
std::tuple<at::Tensor, at::Tensor> get_panoptic_segmentation_cpu(
    const at::Tensor& sem_seg, const at::Tensor& center_heatmap, const at::Tensor& offsets, at::IntArrayRef thing_ids,
    int64_t label_divisor, int64_t stuff_area, int64_t void_label, double threshold, int64_t nms_kernel,
    std::optional<int64_t> top_k, const std::optional<at::Tensor>& foreground_mask);

}  // namespace panoptic_ops
