// Raw-pointer launcher of the CUDA NMS overlap-mask kernel.
#pragma once

#include <cstdint>

namespace panoptic_ops::cuda {

enum class BoxType : int { kFloat = 0, kDouble = 1, kHalf = 2, kBFloat16 = 3 };

constexpr int64_t kNmsBlock = 64;

// sorted_boxes: [N, 4] in score order; classes: [N] or null (single class). Writes
// mask[i * ceil(N / 64) + c] with bit b set when box 64 * c + b (> i) overlaps box i by more
// than iou_threshold and has the same class.
void nms_mask(const void* sorted_boxes, BoxType type, const int64_t* classes, int64_t n, double iou_threshold,
              unsigned long long* mask, void* stream);

}  // namespace panoptic_ops::cuda
