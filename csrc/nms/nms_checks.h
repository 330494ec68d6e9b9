// Argument checks of nms / batched_nms, shared by the CPU glue (nms.cpp) and the CUDA glue
// (nms_cuda.cpp). CUDA also takes float16 / bfloat16 boxes (its overlap kernel computes in
// float); the CPU scan computes in the boxes' own float32 / float64.
#pragma once

#include "common/checks.h"

namespace panoptic_ops::nms_checks {

inline void check_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor* idxs) {
  checks::check_shape(boxes, "boxes", {checks::kAny, 4});
  if (boxes.is_cuda())
    checks::check_dtype(boxes, "boxes", {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16});
  else
    checks::check_float(boxes, "boxes");
  const int64_t n = boxes.size(0);
  checks::check_shape(scores, "scores", {n});
  TORCH_CHECK_TYPE(scores.is_floating_point(), "scores must be a floating tensor, got ",
                   checks::dtype_name(scores.scalar_type()));
  if (idxs != nullptr) {
    checks::check_shape(*idxs, "idxs", {n});
    checks::check_integer(*idxs, "idxs");
  }
  checks::check_same_device({{"boxes", &boxes}, {"scores", &scores}, {"idxs", idxs}});
}

}  // namespace panoptic_ops::nms_checks
