// Greedy IoU NMS with torchvision's semantics (x1y1x2y2, area without +1, stable descending
// score order, suppression when IoU > threshold) and per-class batched NMS without a Python loop.
// The greedy scan itself (exhaustive for small problems, through a spatial index for large
// ones) is in nms_greedy.h, shared with the CUDA op's host path.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/sort.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "nms/nms_checks.h"
#include "nms/nms_greedy.h"

namespace panoptic_ops {
namespace {

using nms_host::greedy;
using nms_host::SortedBoxes;

// Rank order: stable descending sort of the scores (torch.sort, so NaN handling matches too).
at::Tensor score_order(const at::Tensor& scores) {
  return std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
}

at::Tensor kept_in_order(const at::Tensor& order, const std::vector<uint8_t>& keep) {
  const int64_t* o = order.data_ptr<int64_t>();
  std::vector<int64_t> kept;
  for (size_t r = 0; r < keep.size(); ++r)
    if (keep[r]) kept.push_back(o[r]);
  at::Tensor out = at::empty({static_cast<int64_t>(kept.size())}, order.options());
  std::copy(kept.begin(), kept.end(), out.data_ptr<int64_t>());
  return out;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  nms_checks::check_nms(boxes, scores, nullptr);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor order = score_order(scores);
  const at::Tensor b = boxes.contiguous();
  std::vector<uint8_t> keep(n, 0);
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms", [&] {
    const SortedBoxes<scalar_t> sorted(b.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), nullptr, n);
    greedy(sorted, iou_threshold, keep.data());
  });
  return kept_in_order(order, keep);
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  nms_checks::check_nms(boxes, scores, &idxs);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor order = score_order(scores);
  const at::Tensor b = boxes.contiguous();
  const at::Tensor classes = idxs.to(at::kLong).contiguous();
  const int64_t* o = order.data_ptr<int64_t>();
  const int64_t* c = classes.data_ptr<int64_t>();
  // Ranks of each class in score order: a stable sort of the ranks by class.
  std::vector<int64_t> by_class(n);
  std::iota(by_class.begin(), by_class.end(), 0);
  std::stable_sort(by_class.begin(), by_class.end(), [&](int64_t r, int64_t s) { return c[o[r]] < c[o[s]]; });
  std::vector<std::vector<int64_t>> groups;
  for (int64_t g = 0; g < n;) {
    int64_t e = g;
    while (e < n && c[o[by_class[e]]] == c[o[by_class[g]]]) ++e;
    groups.emplace_back(by_class.begin() + g, by_class.begin() + e);
    g = e;
  }
  std::vector<uint8_t> keep(n, 0);
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "batched_nms", [&] {
    at::parallel_for(0, static_cast<int64_t>(groups.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) {
        const std::vector<int64_t>& ranks = groups[g];
        const int64_t m = static_cast<int64_t>(ranks.size());
        const SortedBoxes<scalar_t> sorted(b.data_ptr<scalar_t>(), o, ranks.data(), m);
        std::vector<uint8_t> group_keep(m, 0);
        greedy(sorted, iou_threshold, group_keep.data());
        for (int64_t r = 0; r < m; ++r) keep[ranks[r]] = group_keep[r];
      }
    });
  });
  return kept_in_order(order, keep);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(panoptic_ops, m) {
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
}

TORCH_LIBRARY_IMPL(panoptic_ops, CPU, m) {
  m.impl("nms", &nms_cpu);
  m.impl("batched_nms", &batched_nms_cpu);
}

}  // namespace panoptic_ops
