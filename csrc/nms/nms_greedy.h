// Greedy NMS over boxes already in score order (host code, no torch headers): the exhaustive
// branch-free scan, and a spatial index that only looks at boxes that can overlap. Both give
// exactly torchvision's keep-set: the same IoU arithmetic on the same pairs, in the same order
// of kept boxes; the index only skips pairs whose IoU cannot exceed the threshold.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

namespace panoptic_ops::nms_host {

// Boxes of one NMS problem in score order, one array per coordinate, so inner loops stream
// memory and vectorise. `order[ranks[r]]` (or `order[r]`) is the input row of rank r.
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

// IoU of box i (coordinates ix1..iarea) with box j > threshold, exactly as torchvision's CPU
// kernel computes it (std::max / std::min, area without +1), written branch-free.
template <typename T>
inline uint8_t suppresses(T ix1, T iy1, T ix2, T iy2, T iarea, T x1, T y1, T x2, T y2, T area, T threshold) {
  const T xx1 = ix1 < x1 ? x1 : ix1;  // std::max(ix1, x1)
  const T yy1 = iy1 < y1 ? y1 : iy1;
  const T xx2 = x2 < ix2 ? x2 : ix2;  // std::min(ix2, x2)
  const T yy2 = y2 < iy2 ? y2 : iy2;
  const T dw = xx2 - xx1, dh = yy2 - yy1;
  const T w = T(0) < dw ? dw : T(0);  // std::max(T(0), dw)
  const T h = T(0) < dh ? dh : T(0);
  const T inter = w * h;
  const T ovr = inter / (iarea + area - inter);
  return static_cast<uint8_t>(ovr > threshold);
}

// Every kept box against every later box (suppressed ones too, so the loop vectorises):
// O(kept * n). The fastest for small problems, and the only exact choice for a negative
// threshold (there, pairs that do not overlap suppress too).
template <typename T>
void greedy_exhaustive(const SortedBoxes<T>& b, T threshold, uint8_t* keep) {
  const int64_t m = static_cast<int64_t>(b.x1.size());
  std::vector<uint8_t> suppressed(m, 0);
  const T *x1 = b.x1.data(), *y1 = b.y1.data(), *x2 = b.x2.data(), *y2 = b.y2.data(), *area = b.area.data();
  uint8_t* sup = suppressed.data();
  for (int64_t i = 0; i < m; ++i) {
    if (sup[i]) continue;
    keep[i] = 1;
    const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
    for (int64_t j = i + 1; j < m; ++j)
      sup[j] |= suppresses(ix1, iy1, ix2, iy2, iarea, x1[j], y1[j], x2[j], y2[j], area[j], threshold);
  }
}

// Greedy NMS through a static R-tree (sort-tile-recursive packing: slabs by x1, leaves by y1
// inside a slab, a complete binary tree of leaf bounding boxes over them).
//
// Why it is exact for threshold >= 0: a pair suppresses only when ovr > threshold >= 0, which
// needs inter > 0, i.e. min(x2) > max(x1) and min(y2) > max(y1). So a box with x2 <= x1,
// y2 <= y1 or a NaN coordinate never suppresses and is never suppressed (it is simply kept),
// and a kept box only has to look at boxes whose extents strictly overlap its own, which the
// tree's bounding boxes find. Boxes leave the tree when they are kept or suppressed, so every
// box left in it ranks after the box being processed, as in the exhaustive scan; IoUs are
// computed by the same function on the same (kept, later) pairs.
//
// Cost: O(n log n) to build, then per kept box O(log n + leaves its extent overlaps): about
// O(n log n) when boxes overlap little; dense clusters cost what the exhaustive scan costs.
template <typename T>
void greedy_indexed(const SortedBoxes<T>& b, T threshold, uint8_t* keep) {
  constexpr int64_t kLeaf = 16;
  const int64_t m = static_cast<int64_t>(b.x1.size());
  std::vector<uint8_t> suppressed(m, 0);
  std::vector<int64_t> pos(m, -1);  // slot of each rank in the tree, -1 when not in it

  std::vector<int64_t> active;
  active.reserve(m);
  for (int64_t r = 0; r < m; ++r)
    if (b.x2[r] > b.x1[r] && b.y2[r] > b.y1[r]) active.push_back(r);  // false for NaN
  const int64_t k = static_cast<int64_t>(active.size());
  const int64_t leaves = (k + kLeaf - 1) / kLeaf;
  if (leaves > 0) {
    std::sort(active.begin(), active.end(), [&](int64_t r, int64_t s) {
      return b.x1[r] < b.x1[s] || (b.x1[r] == b.x1[s] && r < s);
    });
    const int64_t slabs = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(leaves))));
    const int64_t per_slab = ((leaves + slabs - 1) / slabs) * kLeaf;
    for (int64_t s = 0; s < k; s += per_slab) {
      auto first = active.begin() + s, last = active.begin() + std::min(k, s + per_slab);
      std::sort(first, last, [&](int64_t r, int64_t q) { return b.y1[r] < b.y1[q] || (b.y1[r] == b.y1[q] && r < q); });
    }
  }
  int64_t width = 1;
  while (width < leaves) width <<= 1;
  const int64_t slots = leaves * kLeaf;
  // Tree-ordered copies of the boxes (padding slots are dead), and per node: bounding box of
  // its boxes and how many of them are still in the tree.
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<T> tx1(slots, inf), ty1(slots, inf), tx2(slots, -inf), ty2(slots, -inf), tarea(slots, T(0));
  std::vector<int64_t> rank_at(slots, -1);
  std::vector<uint8_t> live(slots, 0);
  std::vector<T> nx1(2 * width, inf), ny1(2 * width, inf), nx2(2 * width, -inf), ny2(2 * width, -inf);
  std::vector<int64_t> count(2 * width, 0);
  for (int64_t p = 0; p < k; ++p) {
    const int64_t r = active[p];
    tx1[p] = b.x1[r], ty1[p] = b.y1[r], tx2[p] = b.x2[r], ty2[p] = b.y2[r], tarea[p] = b.area[r];
    rank_at[p] = r;
    live[p] = 1;
    pos[r] = p;
    const int64_t node = width + p / kLeaf;
    nx1[node] = std::min(nx1[node], tx1[p]), ny1[node] = std::min(ny1[node], ty1[p]);
    nx2[node] = std::max(nx2[node], tx2[p]), ny2[node] = std::max(ny2[node], ty2[p]);
    ++count[node];
  }
  for (int64_t node = width - 1; node >= 1; --node) {
    const int64_t a = 2 * node, c = 2 * node + 1;
    nx1[node] = std::min(nx1[a], nx1[c]), ny1[node] = std::min(ny1[a], ny1[c]);
    nx2[node] = std::max(nx2[a], nx2[c]), ny2[node] = std::max(ny2[a], ny2[c]);
    count[node] = count[a] + count[c];
  }
  auto remove = [&](int64_t leaf, int64_t n_removed) {
    for (int64_t node = width + leaf; node >= 1; node >>= 1) count[node] -= n_removed;
  };

  std::vector<int64_t> stack;
  uint8_t hit[kLeaf];
  for (int64_t i = 0; i < m; ++i) {
    if (suppressed[i]) continue;
    keep[i] = 1;
    const int64_t p = pos[i];
    if (p < 0) continue;  // cannot overlap anything
    live[p] = 0;
    remove(p / kLeaf, 1);
    const T ix1 = b.x1[i], iy1 = b.y1[i], ix2 = b.x2[i], iy2 = b.y2[i], iarea = b.area[i];
    stack.assign(1, 1);
    while (!stack.empty()) {
      const int64_t node = stack.back();
      stack.pop_back();
      if (count[node] == 0 || !(nx1[node] < ix2 && nx2[node] > ix1 && ny1[node] < iy2 && ny2[node] > iy1)) continue;
      if (node < width) {
        stack.push_back(2 * node + 1);
        stack.push_back(2 * node);
        continue;
      }
      const int64_t base = (node - width) * kLeaf;
      int64_t n_hit = 0;
      for (int64_t s = 0; s < kLeaf; ++s) {
        const int64_t q = base + s;
        hit[s] = live[q] & suppresses(ix1, iy1, ix2, iy2, iarea, tx1[q], ty1[q], tx2[q], ty2[q], tarea[q], threshold);
        n_hit += hit[s];
      }
      if (n_hit == 0) continue;
      for (int64_t s = 0; s < kLeaf; ++s) {
        if (!hit[s]) continue;
        live[base + s] = 0;
        suppressed[rank_at[base + s]] = 1;
      }
      remove(node - width, n_hit);
    }
  }
}

// Problems this small are faster without the index.
constexpr int64_t kIndexedMin = 2048;

// Greedy NMS of boxes in score order with torchvision's semantics; sets keep[r] for survivors.
template <typename T>
void greedy(const SortedBoxes<T>& b, double iou_threshold, uint8_t* keep) {
  const T threshold = threshold_in<T>(iou_threshold);
  const int64_t m = static_cast<int64_t>(b.x1.size());
  if (std::isnan(threshold)) {  // nothing is > NaN: every box survives
    std::fill(keep, keep + m, uint8_t(1));
  } else if (threshold < T(0) || m < kIndexedMin) {
    greedy_exhaustive(b, threshold, keep);
  } else {
    greedy_indexed(b, threshold, keep);
  }
}

}  // namespace panoptic_ops::nms_host
