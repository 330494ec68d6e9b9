// CUDA NMS overlap mask, the scheme of torchvision's kernel: 64 x 64 tiles, one bit per pair.
// IoU follows torchvision's CUDA arithmetic (intersection extents in the box type, areas and
// ratio in float for half types) and is compared with the threshold in double like the CPU op.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "nms/nms_launch.h"

namespace panoptic_ops::cuda {
namespace {

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename T>
__device__ inline typename Acc<T>::type up(T v) {
  return static_cast<typename Acc<T>::type>(v);
}
template <>
__device__ inline float up<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ inline float up<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// a - b rounded to T (what T's operator- does), returned in the accumulation type.
template <typename T>
__device__ inline typename Acc<T>::type sub(T a, T b) {
  return up(a) - up(b);
}
template <>
__device__ inline float sub<__half>(__half a, __half b) {
  return __half2float(__float2half_rn(__half2float(a) - __half2float(b)));
}
template <>
__device__ inline float sub<__nv_bfloat16>(__nv_bfloat16 a, __nv_bfloat16 b) {
  return __bfloat162float(__float2bfloat16_rn(__bfloat162float(a) - __bfloat162float(b)));
}

template <typename T>
__device__ inline bool overlaps(const T* a, const T* b, double threshold) {
  using A = typename Acc<T>::type;
  // std::max(a, b) / std::min(a, b) as the CPU kernel: they select an input, exact in any type.
  const T left = up(a[0]) < up(b[0]) ? b[0] : a[0];
  const T right = up(b[2]) < up(a[2]) ? b[2] : a[2];
  const T top = up(a[1]) < up(b[1]) ? b[1] : a[1];
  const T bottom = up(b[3]) < up(a[3]) ? b[3] : a[3];
  A width = sub(right, left), height = sub(bottom, top);
  width = width > A(0) ? width : A(0);
  height = height > A(0) ? height : A(0);
  const A inter = width * height;
  const A area_a = (up(a[2]) - up(a[0])) * sub(a[3], a[1]);
  const A area_b = (up(b[2]) - up(b[0])) * sub(b[3], b[1]);
  const A iou = inter / (area_a + area_b - inter);
  return static_cast<double>(iou) > threshold;
}

template <typename T>
__global__ void nms_mask_kernel(const T* boxes, const int64_t* classes, int64_t n, double threshold,
                                unsigned long long* mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) return;
  const int64_t blocks = (n + kNmsBlock - 1) / kNmsBlock;
  const int row_size = static_cast<int>(min(n - row_block * kNmsBlock, kNmsBlock));
  const int col_size = static_cast<int>(min(n - col_block * kNmsBlock, kNmsBlock));
  __shared__ T block_boxes[kNmsBlock * 4];
  __shared__ int64_t block_classes[kNmsBlock];
  if (threadIdx.x < col_size) {
    for (int c = 0; c < 4; ++c)
      block_boxes[threadIdx.x * 4 + c] = boxes[(kNmsBlock * col_block + threadIdx.x) * 4 + c];
    block_classes[threadIdx.x] = classes ? classes[kNmsBlock * col_block + threadIdx.x] : 0;
  }
  __syncthreads();
  if (threadIdx.x < row_size) {
    const int64_t i = kNmsBlock * row_block + threadIdx.x;
    const T* box = boxes + i * 4;
    const int64_t cls = classes ? classes[i] : 0;
    unsigned long long bits = 0;
    const int start = row_block == col_block ? threadIdx.x + 1 : 0;
    for (int j = start; j < col_size; ++j) {
      if (block_classes[j] == cls && overlaps(box, block_boxes + j * 4, threshold)) bits |= 1ull << j;
    }
    mask[i * blocks + col_block] = bits;
  }
}

}  // namespace

void nms_mask(const void* sorted_boxes, BoxType type, const int64_t* classes, int64_t n, double iou_threshold,
              unsigned long long* mask, void* stream) {
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>((n + kNmsBlock - 1) / kNmsBlock);
  const dim3 grid(blocks, blocks);
  auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case BoxType::kFloat:
      nms_mask_kernel<float><<<grid, kNmsBlock, 0, s>>>(static_cast<const float*>(sorted_boxes), classes, n,
                                                         iou_threshold, mask);
      break;
    case BoxType::kDouble:
      nms_mask_kernel<double><<<grid, kNmsBlock, 0, s>>>(static_cast<const double*>(sorted_boxes), classes, n,
                                                          iou_threshold, mask);
      break;
    case BoxType::kHalf:
      nms_mask_kernel<__half><<<grid, kNmsBlock, 0, s>>>(static_cast<const __half*>(sorted_boxes), classes, n,
                                                          iou_threshold, mask);
      break;
    case BoxType::kBFloat16:
      nms_mask_kernel<__nv_bfloat16><<<grid, kNmsBlock, 0, s>>>(static_cast<const __nv_bfloat16*>(sorted_boxes),
                                                                 classes, n, iou_threshold, mask);
      break;
  }
}

}  // namespace panoptic_ops::cuda
