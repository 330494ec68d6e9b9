// CUDA glue of nms / batched_nms: stable device sort, overlap-mask kernel, then the greedy scan
// over the mask on the host (as torchvision does). The mask takes N^2 / 8 bytes, so above
// kHostMin boxes (128 MB of mask) float32 / float64 problems run the CPU op's indexed greedy
// scan on a host copy instead (exact, O(N log N) for boxes that overlap little).
#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <vector>

#include "nms/nms_checks.h"
#include "nms/nms_launch.h"

namespace panoptic_ops {
namespace {

cuda::BoxType box_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::BoxType::kFloat;
    case at::kDouble:
      return cuda::BoxType::kDouble;
    case at::kHalf:
      return cuda::BoxType::kHalf;
    case at::kBFloat16:
      return cuda::BoxType::kBFloat16;
    default:  // refused by nms_checks::check_nms
      TORCH_CHECK(false, "unreachable: boxes of dtype ", t);
  }
}

constexpr int64_t kHostMin = 32768;

// The CPU kernel of `op` on host copies of the inputs, result moved back to the device.
at::Tensor on_host(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                   double iou_threshold) {
  const at::Tensor b = boxes.cpu(), s = scores.cpu();
  at::Tensor keep;
  if (idxs.has_value()) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("panoptic_ops::batched_nms", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
    keep = op.call(b, s, idxs->cpu(), iou_threshold);
  } else {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("panoptic_ops::nms", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
    keep = op.call(b, s, iou_threshold);
  }
  return keep.to(boxes.device());
}

at::Tensor nms_impl(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                    double iou_threshold) {
  const c10::DeviceGuard guard(boxes.device());
  nms_checks::check_nms(boxes, scores, idxs.has_value() ? &*idxs : nullptr);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  if (n >= kHostMin && (boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble))
    return on_host(boxes, scores, idxs, iou_threshold);
  const cuda::BoxType type = box_type(boxes.scalar_type());
  const at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted = boxes.index_select(0, order).contiguous();
  at::Tensor classes;
  if (idxs.has_value()) classes = idxs->to(at::kLong).index_select(0, order).contiguous();
  const int64_t blocks = (n + cuda::kNmsBlock - 1) / cuda::kNmsBlock;
  at::Tensor mask = at::empty({n * blocks}, boxes.options().dtype(at::kLong));
  cuda::nms_mask(sorted.data_ptr(), type, idxs.has_value() ? classes.data_ptr<int64_t>() : nullptr, n, iou_threshold,
                 reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()),
                 at::accelerator::getCurrentStream(boxes.device().index()).native_handle());
  const at::Tensor mask_cpu = mask.cpu();
  const auto* bits = reinterpret_cast<const unsigned long long*>(mask_cpu.data_ptr<int64_t>());
  std::vector<unsigned long long> removed(blocks, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i) {
    if (removed[i / cuda::kNmsBlock] & (1ull << (i % cuda::kNmsBlock))) continue;
    keep.push_back(i);
    for (int64_t b = i / cuda::kNmsBlock; b < blocks; ++b) removed[b] |= bits[i * blocks + b];
  }
  const at::Tensor keep_ranks = at::tensor(keep, at::TensorOptions().dtype(at::kLong)).to(boxes.device());
  return order.index_select(0, keep_ranks);
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return nms_impl(boxes, scores, std::nullopt, iou_threshold);
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  return nms_impl(boxes, scores, idxs, iou_threshold);
}

}  // namespace

TORCH_LIBRARY_IMPL(panoptic_ops, CUDA, m) {
  m.impl("nms", &nms_cuda);
  m.impl("batched_nms", &batched_nms_cuda);
}

}  // namespace panoptic_ops
