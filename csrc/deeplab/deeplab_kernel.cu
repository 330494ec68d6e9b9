// CUDA kernels of the Panoptic-DeepLab post-processing. The arithmetic shared with the CPU
// kernels is in deeplab_math.h; -fmad=false (set by the build) keeps every operation rounded.
#include <cuda_runtime.h>

#include <cmath>

#include "deeplab/deeplab_launch.h"
#include "deeplab/deeplab_math.h"

namespace panoptic_ops::cuda {
namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

using deeplab_math::thresholded;

template <typename T>
__global__ void center_peaks_kernel(const T* heatmap, T* peaks, int64_t height, int64_t width, T threshold,
                                    int64_t radius) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= height * width) return;
  const int64_t y = p / width, x = p % width;
  const T value = thresholded(heatmap[p], threshold);
  bool peak = value > T(0);
  for (int64_t j = max(int64_t(0), y - radius); j <= min(height - 1, y + radius) && peak; ++j)
    for (int64_t i = max(int64_t(0), x - radius); i <= min(width - 1, x + radius) && peak; ++i) {
      const T v = thresholded(heatmap[j * width + i], threshold);
      peak = deeplab_math::window_ok(v, value);
    }
  peaks[p] = peak ? value : T(-1);
}

template <typename T>
__global__ void group_kernel(const int64_t* centers, int64_t num_centers, const T* offsets, int64_t height,
                             int64_t width, const uint8_t* mask, int64_t* out) {
  const int64_t plane = height * width;
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= plane) return;
  if (mask != nullptr && !mask[p]) {
    out[p] = 0;
    return;
  }
  const T loc_y = static_cast<T>(p / width) + offsets[p];
  const T loc_x = static_cast<T>(p % width) + offsets[plane + p];
  deeplab_math::Nearest<T> search;
  for (int64_t k = 0; k < num_centers; ++k)
    if (!search.offer(k, k, static_cast<T>(centers[2 * k]) - loc_y, static_cast<T>(centers[2 * k + 1]) - loc_x)) break;
  out[p] = search.best + 1;
}

__global__ void votes_kernel(const int64_t* class_index, const int64_t* instance_index, const int64_t* ins, int64_t n,
                             int64_t num_instances, int64_t num_labels, unsigned long long* votes) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  if (instance_index[p] >= 0) {
    atomicAdd(votes + instance_index[p] * num_labels + class_index[p], 1ull);
  } else if (ins[p] == 0) {
    atomicAdd(votes + num_instances * num_labels + class_index[p], 1ull);
  }
}

__global__ void paint_kernel(const int64_t* class_index, const int64_t* instance_index, const int64_t* ins, int64_t n,
                             const int64_t* instance_value, const int64_t* stuff_value, const uint8_t* stuff_keep,
                             int64_t void_label, int64_t* out) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  out[p] = deeplab_math::painted(instance_index[p], ins[p], class_index[p], instance_value, stuff_value, stuff_keep,
                                 void_label);
}

}  // namespace

void center_peaks(const void* heatmap, void* peaks, bool is_double, int64_t height, int64_t width, double threshold,
                  int64_t radius, void* stream) {
  const int64_t n = height * width;
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    center_peaks_kernel<double><<<blocks_for(n), kThreads, 0, s>>>(
        static_cast<const double*>(heatmap), static_cast<double*>(peaks), height, width, threshold, radius);
  } else {
    center_peaks_kernel<float><<<blocks_for(n), kThreads, 0, s>>>(static_cast<const float*>(heatmap),
                                                                   static_cast<float*>(peaks), height, width,
                                                                   static_cast<float>(threshold), radius);
  }
}

void group_pixels(const int64_t* centers, int64_t num_centers, const void* offsets, bool is_double, int64_t height,
                  int64_t width, const uint8_t* mask, int64_t* out, void* stream) {
  const int64_t n = height * width;
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double) {
    group_kernel<double><<<blocks_for(n), kThreads, 0, s>>>(centers, num_centers, static_cast<const double*>(offsets),
                                                            height, width, mask, out);
  } else {
    group_kernel<float><<<blocks_for(n), kThreads, 0, s>>>(centers, num_centers, static_cast<const float*>(offsets),
                                                           height, width, mask, out);
  }
}

void merge_votes(const int64_t* class_index, const int64_t* instance_index, const int64_t* ins, int64_t n,
                 int64_t num_instances, int64_t num_labels, unsigned long long* votes, void* stream) {
  if (n == 0) return;
  votes_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      class_index, instance_index, ins, n, num_instances, num_labels, votes);
}

void merge_paint(const int64_t* class_index, const int64_t* instance_index, const int64_t* ins, int64_t n,
                 const int64_t* instance_value, const int64_t* stuff_value, const uint8_t* stuff_keep,
                 int64_t void_label, int64_t* out, void* stream) {
  if (n == 0) return;
  paint_kernel<<<blocks_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      class_index, instance_index, ins, n, instance_value, stuff_value, stuff_keep, void_label, out);
}

}  // namespace panoptic_ops::cuda
