// Greedy IoU NMS with torchvision's semantics (x1y1x2y2, area without +1, stable descending
// score order, suppression when IoU > threshold) and per-class batched NMS without a Python loop.
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

namespace panoptic_ops {
namespace {

void check_boxes(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "scores must have shape [N] with N = ",
              boxes.size(0), ", got ", scores.sizes());
}

// Boxes gathered in score order, one array per coordinate, so the inner loop streams memory.
template <typename T>
struct SortedBoxes {
  std::vector<T> x1, y1, x2, y2, area;
  SortedBoxes(const T* boxes, const int64_t* order, int64_t n) : x1(n), y1(n), x2(n), y2(n), area(n) {
    for (int64_t r = 0; r < n; ++r) {
      const T* b = boxes + 4 * order[r];
      x1[r] = b[0];
      y1[r] = b[1];
      x2[r] = b[2];
      y2[r] = b[3];
      area[r] = (x2[r] - x1[r]) * (y2[r] - y1[r]);
    }
  }
};

// Greedy NMS over the ranks listed in `ranks` (increasing); sets keep[rank] for the survivors.
// The IoU is computed in T exactly as torchvision's CPU kernel and compared with the double
// threshold.
template <typename T>
void greedy(const SortedBoxes<T>& b, const std::vector<int64_t>& ranks, double iou_threshold, uint8_t* keep) {
  const int64_t m = static_cast<int64_t>(ranks.size());
  std::vector<uint8_t> suppressed(m, 0);
  for (int64_t a = 0; a < m; ++a) {
    if (suppressed[a]) continue;
    const int64_t i = ranks[a];
    keep[i] = 1;
    const T ix1 = b.x1[i], iy1 = b.y1[i], ix2 = b.x2[i], iy2 = b.y2[i], iarea = b.area[i];
    for (int64_t c = a + 1; c < m; ++c) {
      if (suppressed[c]) continue;
      const int64_t j = ranks[c];
      const T xx1 = std::max(ix1, b.x1[j]);
      const T yy1 = std::max(iy1, b.y1[j]);
      const T xx2 = std::min(ix2, b.x2[j]);
      const T yy2 = std::min(iy2, b.y2[j]);
      const T w = std::max(static_cast<T>(0), xx2 - xx1);
      const T h = std::max(static_cast<T>(0), yy2 - yy1);
      const T inter = w * h;
      const T ovr = inter / (iarea + b.area[j] - inter);
      if (static_cast<double>(ovr) > iou_threshold) suppressed[c] = 1;
    }
  }
}

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
  check_boxes(boxes, scores);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor order = score_order(scores);
  const at::Tensor b = boxes.contiguous();
  std::vector<uint8_t> keep(n, 0);
  std::vector<int64_t> ranks(n);
  std::iota(ranks.begin(), ranks.end(), 0);
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms", [&] {
    const SortedBoxes<scalar_t> sorted(b.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), n);
    greedy(sorted, ranks, iou_threshold, keep.data());
  });
  return kept_in_order(order, keep);
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  check_boxes(boxes, scores);
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), "idxs must have shape [N] with N = ", boxes.size(0),
              ", got ", idxs.sizes());
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
    const SortedBoxes<scalar_t> sorted(b.data_ptr<scalar_t>(), o, n);
    at::parallel_for(0, static_cast<int64_t>(groups.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) greedy(sorted, groups[g], iou_threshold, keep.data());
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
