// CUDA kernels of the CIAE box-filtered similarity. Same arithmetic as the CPU kernels: the
// dot product accumulates channels in order with separately rounded multiply and add
// (-fmad=false), so CPU and CUDA results are identical.
#include <cuda_runtime.h>

#include <cmath>

#include "box_similarity/box_similarity_launch.h"
#include "box_similarity/box_window.h"

namespace panoptic_ops::cuda {
namespace {

constexpr int kThreads = 256;

__device__ inline bool in_box(const double* box, int64_t y, int64_t x, int64_t stride) {
  const double s = static_cast<double>(stride);
  return inside(box[0], box[2], x, s) && inside(box[1], box[3], y, s);
}

template <typename T>
__global__ void similarity_kernel(const T* embeddings, const T* queries, const double* boxes, int64_t batch,
                                  int64_t dim, int64_t height, int64_t width, int64_t num, int64_t stride, T* out) {
  const int64_t plane = height * width;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= batch * num * plane) return;
  const int64_t p = i % plane, bn = i / plane, b = bn / num;
  T acc = T(0);
  if (in_box(boxes + 4 * bn, p / width, p % width, stride)) {
    const T* e = embeddings + b * dim * plane + p;
    const T* q = queries + bn * dim;
    for (int64_t d = 0; d < dim; ++d) acc = acc + e[d * plane] * q[d];
  }
  out[i] = acc;
}

template <typename T>
__global__ void assign_kernel(const T* embeddings, const T* queries, const double* boxes, int64_t batch, int64_t dim,
                              int64_t height, int64_t width, int64_t num, int64_t stride, int64_t* ids, T* scores) {
  const int64_t plane = height * width;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= batch * plane) return;
  const int64_t p = i % plane, b = i / plane, y = p / width, x = p % width;
  const T* e = embeddings + b * dim * plane + p;
  int64_t best_id = 0;
  T best = T(0);
  for (int64_t n = 0; n < num; ++n) {
    T acc = T(0);
    if (in_box(boxes + 4 * (b * num + n), y, x, stride)) {
      const T* q = queries + (b * num + n) * dim;
      for (int64_t d = 0; d < dim; ++d) acc = acc + e[d * plane] * q[d];
    }
    if (n == 0 || acc > best || isnan(acc)) {
      best = acc;
      best_id = n;
      if (isnan(acc)) break;  // argmax returns the first NaN
    }
  }
  ids[i] = best_id;
  scores[i] = best;
}

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

void box_similarity(const void* embeddings, const void* queries, const double* boxes, bool is_double, int64_t batch,
                    int64_t dim, int64_t height, int64_t width, int64_t num, int64_t stride, void* out, void* stream) {
  const int64_t total = batch * num * height * width;
  if (total == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    similarity_kernel<double><<<blocks_for(total), kThreads, 0, s>>>(
        static_cast<const double*>(embeddings), static_cast<const double*>(queries), boxes, batch, dim, height, width,
        num, stride, static_cast<double*>(out));
  } else {
    similarity_kernel<float><<<blocks_for(total), kThreads, 0, s>>>(
        static_cast<const float*>(embeddings), static_cast<const float*>(queries), boxes, batch, dim, height, width,
        num, stride, static_cast<float*>(out));
  }
}

void box_assign(const void* embeddings, const void* queries, const double* boxes, bool is_double, int64_t batch,
                int64_t dim, int64_t height, int64_t width, int64_t num, int64_t stride, int64_t* ids, void* scores,
                void* stream) {
  const int64_t total = batch * height * width;
  if (total == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    assign_kernel<double><<<blocks_for(total), kThreads, 0, s>>>(
        static_cast<const double*>(embeddings), static_cast<const double*>(queries), boxes, batch, dim, height, width,
        num, stride, ids, static_cast<double*>(scores));
  } else {
    assign_kernel<float><<<blocks_for(total), kThreads, 0, s>>>(
        static_cast<const float*>(embeddings), static_cast<const float*>(queries), boxes, batch, dim, height, width,
        num, stride, ids, static_cast<float*>(scores));
  }
}

}  // namespace panoptic_ops::cuda
