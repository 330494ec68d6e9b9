// Argument checks of box_filtered_similarity / box_filtered_assign, shared by the CPU glue
// (box_similarity.cpp) and the CUDA glue (box_similarity_cuda.cpp). The kernels compute in
// float32 or float64; panoptic_ops.box_filtered_similarity casts half inputs before the call.
#pragma once

#include "common/checks.h"

namespace panoptic_ops::box_similarity_checks {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.is_floating_point(), name, " must be a floating tensor, got ", checks::dtype_name(t.scalar_type()));
  checks::check_float(t, name);
}

inline void check_inputs(const at::Tensor& embeddings, const at::Tensor& queries, const at::Tensor& boxes,
                         int64_t stride) {
  checks::check_dims(embeddings, "embeddings", 4);
  const int64_t batch = embeddings.size(0), dim = embeddings.size(1);
  checks::check_shape(queries, "queries", {batch, checks::kAny, dim});
  checks::check_shape(boxes, "boxes", {batch, queries.size(1), 4});
  check_floating(embeddings, "embeddings");
  check_floating(queries, "queries");
  check_floating(boxes, "boxes");
  TORCH_CHECK_TYPE(queries.scalar_type() == embeddings.scalar_type(), "queries must have the dtype of embeddings (",
                   checks::dtype_name(embeddings.scalar_type()), "), got ", checks::dtype_name(queries.scalar_type()));
  checks::check_same_device({{"embeddings", &embeddings}, {"queries", &queries}, {"boxes", &boxes}});
  TORCH_CHECK_VALUE(stride >= 1, "stride must be a positive integer (image pixels per embedding pixel), got ", stride);
}

inline void check_assign(const at::Tensor& embeddings, const at::Tensor& queries, const at::Tensor& boxes,
                         int64_t stride) {
  check_inputs(embeddings, queries, boxes, stride);
  TORCH_CHECK_VALUE(queries.size(1) >= 1 || embeddings.size(2) * embeddings.size(3) == 0,
                    "box_filtered_assign needs at least one query: queries has shape ",
                    checks::shape_string(queries.sizes()));
}

}  // namespace panoptic_ops::box_similarity_checks
