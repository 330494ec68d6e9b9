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
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace panoptic_ops {
namespace {

void check_boxes(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), "scores must have shape [N] with N = ",
              boxes.size(0), ", got ", scores.sizes());
}

// Boxes of one NMS problem in score order, one array per coordinate, so the inner loop streams
// memory and vectorises.
template <typename T>
struct SortedBoxes {
  std::vector<T> x1, y1, x2, y2, area;
  SortedBoxes(const T* boxes, const int64_t* order, const int64_t* ranks, int64_t n)
      : x1(n), y1(n), x2(n), y2(n), area(n) {
    for (int64_t r = 0; r < n; ++r) {
      const T* b = boxes + 4 * order[ranks ? ranks[r] : r];
      x1[r] = b[0];
      y1[r] = b[1];
      x2[r] = b[2];
      y2[r] = b[3];
      area[r] = (x2[r] - x1[r]) * (y2[r] - y1[r]);
    }
  }
};

// The largest T not above `threshold`: for any T value v (NaN included),
// v > that  <=>  double(v) > threshold, so the comparison can stay in T.
template <typename T>
T threshold_in(double threshold) {
  T t = static_cast<T>(threshold);
  if (static_cast<double>(t) > threshold) t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}

// Greedy NMS over boxes in score order; sets keep[r] for the survivors. The IoU is computed in T
// exactly as torchvision's CPU kernel (std::max / std::min, area without +1) and is compared
// with the double threshold.
template <typename T>
void greedy(const SortedBoxes<T>& b, double iou_threshold, uint8_t* keep) {
  const int64_t m = static_cast<int64_t>(b.x1.size());
  const T threshold = threshold_in<T>(iou_threshold);
  std::vector<uint8_t> suppressed(m, 0);
  const T *x1 = b.x1.data(), *y1 = b.y1.data(), *x2 = b.x2.data(), *y2 = b.y2.data(), *area = b.area.data();
  uint8_t* sup = suppressed.data();
  for (int64_t i = 0; i < m; ++i) {
    if (sup[i]) continue;
    keep[i] = 1;
    const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
    // Branch-free over every later box (suppressed ones too): the loop vectorises.
    for (int64_t j = i + 1; j < m; ++j) {
      const T xx1 = ix1 < x1[j] ? x1[j] : ix1;  // std::max(ix1, x1[j])
      const T yy1 = iy1 < y1[j] ? y1[j] : iy1;
      const T xx2 = x2[j] < ix2 ? x2[j] : ix2;  // std::min(ix2, x2[j])
      const T yy2 = y2[j] < iy2 ? y2[j] : iy2;
      const T dw = xx2 - xx1, dh = yy2 - yy1;
      const T w = T(0) < dw ? dw : T(0);  // std::max(T(0), dw)
      const T h = T(0) < dh ? dh : T(0);
      const T inter = w * h;
      const T ovr = inter / (iarea + area[j] - inter);
      sup[j] |= static_cast<uint8_t>(ovr > threshold);
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
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms", [&] {
    const SortedBoxes<scalar_t> sorted(b.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), nullptr, n);
    greedy(sorted, iou_threshold, keep.data());
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
