// Raw-pointer launchers of the CIAE box-filtered similarity CUDA kernels (float32 / float64).
#pragma once

#include <cstdint>

namespace panoptic_ops::cuda {

// out: [B, N, H, W]; embeddings [B, D, H, W]; queries [B, N, D]; boxes [B, N, 4] as double.
void box_similarity(const void* embeddings, const void* queries, const double* boxes, bool is_double, int64_t batch,
                    int64_t dim, int64_t height, int64_t width, int64_t num, int64_t stride, void* out, void* stream);

// ids / scores: [B, H, W], the first query of largest similarity (0 outside a query's box).
void box_assign(const void* embeddings, const void* queries, const double* boxes, bool is_double, int64_t batch,
                int64_t dim, int64_t height, int64_t width, int64_t num, int64_t stride, int64_t* ids, void* scores,
                void* stream);

}  // namespace panoptic_ops::cuda
