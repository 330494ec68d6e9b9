// Panoptic-DeepLab post-processing (detectron2 projects/Panoptic-DeepLab post_processing.py),
// element-for-element, without the K x H x W distance tensor: schemas and CPU kernels.
#include "deeplab/deeplab.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/merge_plan.h"
#include "deeplab/deeplab_checks.h"
#include "deeplab/deeplab_math.h"

namespace panoptic_ops {
namespace {

constexpr int64_t kGrain = 16;  // rows per parallel task

using deeplab_math::thresholded;
using deeplab_math::window_ok;

// Flat raster indices of the centers, detectron2's find_instance_center on one [H, W] map.
template <typename T>
std::vector<int64_t> find_centers(const T* heatmap, int64_t height, int64_t width, double threshold_d,
                                  int64_t nms_kernel, std::optional<int64_t> top_k) {
  const T threshold = static_cast<T>(threshold_d);
  const int64_t radius = (nms_kernel - 1) / 2;
  // Only pixels whose thresholded value is positive can be centers; usually they are few, and
  // each is checked against its window directly. When they are many, a separable window
  // maximum (row pass, then column check) bounds the work by O(H * W * nms_kernel).
  std::vector<std::vector<std::pair<int64_t, T>>> peaks_by_row(height);
  std::atomic<int64_t> candidates{0};
  at::parallel_for(0, height, kGrain, [&](int64_t begin, int64_t end) {
    int64_t count = 0;
    for (int64_t y = begin; y < end; ++y) {
      const T* row = heatmap + y * width;
      for (int64_t x = 0; x < width; ++x) {
        const T value = thresholded(row[x], threshold);
        if (value > T(0)) {
          peaks_by_row[y].emplace_back(y * width + x, value);
          ++count;
        }
      }
    }
    candidates += count;
  });
  // Keeps, row by row and in place, the candidates for which is_peak(y, x, value) holds.
  const auto keep_peaks = [&](auto is_peak) {
    at::parallel_for(0, height, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t y = begin; y < end; ++y) {
        auto& row = peaks_by_row[y];
        size_t kept = 0;
        for (const auto& [flat, value] : row)
          if (is_peak(y, flat % width, value)) row[kept++] = {flat, value};
        row.resize(kept);
      }
    });
  };
  if (candidates.load() * nms_kernel <= 2 * height * width) {
    keep_peaks([&](int64_t y, int64_t x, T value) {
      const int64_t lo_y = std::max<int64_t>(0, y - radius), hi_y = std::min<int64_t>(height - 1, y + radius);
      const int64_t lo_x = std::max<int64_t>(0, x - radius), hi_x = std::min<int64_t>(width - 1, x + radius);
      for (int64_t j = lo_y; j <= hi_y; ++j)
        for (int64_t i = lo_x; i <= hi_x; ++i)
          if (!window_ok(thresholded(heatmap[j * width + i], threshold), value)) return false;
      return true;
    });
  } else {
    // Row-wise window maximum of the thresholded map, NaN-propagating like max_pool2d.
    std::vector<T> row_max(static_cast<size_t>(height * width));
    at::parallel_for(0, height, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t y = begin; y < end; ++y) {
        const T* row = heatmap + y * width;
        T* out = row_max.data() + y * width;
        for (int64_t x = 0; x < width; ++x) {
          T best = -std::numeric_limits<T>::infinity();
          const int64_t lo = std::max<int64_t>(0, x - radius), hi = std::min<int64_t>(width - 1, x + radius);
          for (int64_t i = lo; i <= hi; ++i) {
            const T v = thresholded(row[i], threshold);
            if (v > best || std::isnan(v)) best = v;
            if (std::isnan(best)) break;
          }
          out[x] = best;
        }
      }
    });
    keep_peaks([&](int64_t y, int64_t x, T value) {
      const int64_t lo = std::max<int64_t>(0, y - radius), hi = std::min<int64_t>(height - 1, y + radius);
      for (int64_t j = lo; j <= hi; ++j)
        if (!window_ok(row_max[j * width + x], value)) return false;
      return true;
    });
  }
  std::vector<std::pair<int64_t, T>> peaks;
  for (auto& row : peaks_by_row) peaks.insert(peaks.end(), row.begin(), row.end());
  if (top_k.has_value() && static_cast<int64_t>(peaks.size()) >= *top_k) {
    // torch.topk's k-th value over the whole map; it is one of the positive peaks here, and
    // only values strictly above it are kept (ties at the k-th drop, as in detectron2).
    std::vector<T> values(peaks.size());
    std::transform(peaks.begin(), peaks.end(), values.begin(), [](const auto& p) { return p.second; });
    std::nth_element(values.begin(), values.begin() + (*top_k - 1), values.end(), std::greater<T>());
    const T kth = values[*top_k - 1];
    std::vector<std::pair<int64_t, T>> kept;
    for (const auto& p : peaks)
      if (p.second > kth) kept.push_back(p);
    peaks.swap(kept);
  }
  std::vector<int64_t> flat(peaks.size());
  std::transform(peaks.begin(), peaks.end(), flat.begin(), [](const auto& p) { return p.first; });
  return flat;
}

// Candidate centers per cell of a coarse grid over the image: a location in a cell can only be
// nearest to a center whose distance to the cell is within the smallest "farthest distance"
// from the cell to any center. A margin far above float rounding keeps every center that could
// tie, and candidates stay in index order, so the scan below picks exactly what a scan over all
// centers picks. Locations outside the grid (offsets pointing off the image, NaN) scan all.
class CenterGrid {
 public:
  static constexpr int64_t kCell = 16;

  CenterGrid(const int64_t* centers, int64_t num_centers, int64_t height, int64_t width)
      : rows_((height + kCell - 1) / kCell), cols_((width + kCell - 1) / kCell), start_(rows_ * cols_ + 1, 0) {
    std::vector<double> near(num_centers), far(num_centers);
    for (int64_t r = 0; r < rows_; ++r) {
      for (int64_t c = 0; c < cols_; ++c) {
        const double y0 = r * kCell, y1 = (r + 1) * kCell, x0 = c * kCell, x1 = (c + 1) * kCell;
        double bound = std::numeric_limits<double>::infinity();
        for (int64_t k = 0; k < num_centers; ++k) {
          const double cy = static_cast<double>(centers[2 * k]), cx = static_cast<double>(centers[2 * k + 1]);
          const double ny = std::max({y0 - cy, 0.0, cy - y1}), nx = std::max({x0 - cx, 0.0, cx - x1});
          const double fy = std::max(std::abs(cy - y0), std::abs(cy - y1));
          const double fx = std::max(std::abs(cx - x0), std::abs(cx - x1));
          near[k] = std::sqrt(ny * ny + nx * nx);
          far[k] = std::sqrt(fy * fy + fx * fx);
          bound = std::min(bound, far[k]);
        }
        const double limit = bound + 1e-2 + 1e-5 * bound;
        for (int64_t k = 0; k < num_centers; ++k)
          if (near[k] <= limit) candidates_.push_back(k);
        start_[r * cols_ + c + 1] = static_cast<int64_t>(candidates_.size());
      }
    }
  }

  // [first, last) of the candidate list for a location, or false when it lies outside the grid.
  template <typename T>
  bool lookup(T y, T x, const int64_t** first, const int64_t** last) const {
    if (!(y >= T(0) && x >= T(0) && y < static_cast<T>(rows_ * kCell) && x < static_cast<T>(cols_ * kCell)))
      return false;
    const int64_t cell = static_cast<int64_t>(y) / kCell * cols_ + static_cast<int64_t>(x) / kCell;
    *first = candidates_.data() + start_[cell];
    *last = candidates_.data() + start_[cell + 1];
    return true;
  }

 private:
  int64_t rows_, cols_;
  std::vector<int64_t> start_;
  std::vector<int64_t> candidates_;
};

// Index of the nearest of `count` centers, the i-th being center_at(i) (increasing indices):
// deeplab_math::Nearest, shared with the CUDA kernel.
template <typename T, typename CenterAt>
inline int64_t nearest(const T* center_y, const T* center_x, int64_t count, CenterAt center_at, T loc_y, T loc_x) {
  deeplab_math::Nearest<T> search;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t k = center_at(i);
    if (!search.offer(i, k, center_y[k] - loc_y, center_x[k] - loc_x)) break;
  }
  return search.best;
}

// Writes the 1-based nearest-center id of every pixel where `mask` (may be null) is set, 0 elsewhere.
template <typename T>
void group(const int64_t* centers, int64_t num_centers, const T* offsets, int64_t height, int64_t width,
           const uint8_t* mask, int64_t* out) {
  std::vector<T> center_y(num_centers), center_x(num_centers);
  for (int64_t k = 0; k < num_centers; ++k) {
    center_y[k] = static_cast<T>(centers[2 * k]);
    center_x[k] = static_cast<T>(centers[2 * k + 1]);
  }
  const CenterGrid grid(centers, num_centers, height, width);
  const int64_t plane = height * width;
  at::parallel_for(0, height, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t y = begin; y < end; ++y) {
      for (int64_t x = 0; x < width; ++x) {
        const int64_t p = y * width + x;
        if (mask != nullptr && !mask[p]) {
          out[p] = 0;
          continue;
        }
        const T loc_y = static_cast<T>(y) + offsets[p];
        const T loc_x = static_cast<T>(x) + offsets[plane + p];
        const int64_t *first, *last;
        if (grid.lookup(loc_y, loc_x, &first, &last)) {
          out[p] = 1 + nearest(center_y.data(), center_x.data(), last - first,
                               [first](int64_t i) { return first[i]; }, loc_y, loc_x);
        } else {
          out[p] = 1 + nearest(center_y.data(), center_x.data(), num_centers, [](int64_t i) { return i; }, loc_y, loc_x);
        }
      }
    }
  });
}

// Sorted distinct values of `values` at the positions where `select` (may be null) is set, and
// a lookup from value to its index in that list.
class CompactIds {
 public:
  CompactIds(const int64_t* values, int64_t n, const uint8_t* select) {
    using Range = std::pair<int64_t, int64_t>;
    const Range empty{std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min()};
    const Range range = at::parallel_reduce(
        0, n, 1 << 16, empty,
        [&](int64_t begin, int64_t end, Range r) {
          for (int64_t i = begin; i < end; ++i) {  // branch-free: selections can be noisy
            const bool take = !select || select[i];
            r.first = std::min(r.first, take ? values[i] : r.first);
            r.second = std::max(r.second, take ? values[i] : r.second);
          }
          return r;
        },
        [](Range a, Range b) { return Range{std::min(a.first, b.first), std::max(a.second, b.second)}; });
    if (range.first > range.second) return;  // nothing selected
    const uint64_t span = static_cast<uint64_t>(range.second) - static_cast<uint64_t>(range.first);
    if (span < (uint64_t(1) << 22) || span < static_cast<uint64_t>(4 * n)) {
      offset_ = range.first;
      std::vector<uint8_t> present(span + 2, 0);  // the last slot absorbs unselected values
      at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const bool take = !select || select[i];
          uint8_t* flag = &present[take ? static_cast<uint64_t>(values[i] - offset_) : span + 1];
          // Read before writing: few distinct values would otherwise bounce one cache line.
          if (!__atomic_load_n(flag, __ATOMIC_RELAXED)) __atomic_store_n(flag, uint8_t(1), __ATOMIC_RELAXED);
        }
      });
      dense_.assign(span + 1, -1);
      for (size_t v = 0; v < dense_.size(); ++v)
        if (present[v]) {
          dense_[v] = static_cast<int32_t>(sorted_.size());
          sorted_.push_back(offset_ + static_cast<int64_t>(v));
        }
    } else {
      for (int64_t i = 0; i < n; ++i)
        if (!select || select[i]) sorted_.push_back(values[i]);
      std::sort(sorted_.begin(), sorted_.end());
      sorted_.erase(std::unique(sorted_.begin(), sorted_.end()), sorted_.end());
    }
  }
  const std::vector<int64_t>& values() const { return sorted_; }
  int64_t size() const { return static_cast<int64_t>(sorted_.size()); }
  int64_t index(int64_t value) const {
    if (!dense_.empty()) return dense_[value - offset_];
    return std::lower_bound(sorted_.begin(), sorted_.end(), value) - sorted_.begin();
  }

 private:
  int64_t offset_ = 0;
  std::vector<int32_t> dense_;
  std::vector<int64_t> sorted_;
};

// merge_semantic_and_instance on flat arrays; `is_thing_pixel` = (ins > 0) & (thing_seg > 0).
void merge(const CompactIds& classes, const int64_t* sem, const int64_t* ins, const uint8_t* is_thing_pixel, int64_t n,
           int64_t label_divisor, const std::vector<int64_t>& thing_ids, int64_t stuff_area, int64_t void_label,
           int64_t* out) {
  const CompactIds instances(ins, n, is_thing_pixel);
  const int64_t num_labels = classes.size(), num_instances = instances.size();
  std::vector<int64_t> stuff_area_of(num_labels, 0);
  std::vector<int32_t> class_index(n);
  // Per-thread histograms merged at the end keep the counting parallel and deterministic.
  const int64_t threads = at::get_num_threads();
  const bool dense_votes = num_instances * num_labels * threads <= (int64_t(1) << 24);
  const int64_t chunk = std::max<int64_t>(1, (n + threads - 1) / threads);
  std::vector<std::vector<int64_t>> local_votes(threads), local_stuff(threads);
  at::parallel_for(0, threads, 1, [&](int64_t tb, int64_t te) {
    for (int64_t t = tb; t < te; ++t) {
      if (dense_votes) local_votes[t].assign(static_cast<size_t>(num_instances * num_labels), 0);
      local_stuff[t].assign(num_labels, 0);
      int64_t* my_votes = dense_votes ? local_votes[t].data() : nullptr;
      int64_t* my_stuff = local_stuff[t].data();
      int32_t* my_class = class_index.data();
      for (int64_t p = t * chunk; p < std::min(n, (t + 1) * chunk); ++p) {
        const int64_t c = classes.index(sem[p]);
        my_class[p] = static_cast<int32_t>(c);
        if (is_thing_pixel[p]) {
          if (my_votes) ++my_votes[instances.index(ins[p]) * num_labels + c];
        } else if (ins[p] == 0) {
          ++my_stuff[c];
        }
      }
    }
  });
  for (int64_t t = 0; t < threads; ++t)
    for (int64_t c = 0; c < num_labels; ++c) stuff_area_of[c] += local_stuff[t][c];
  std::vector<int64_t> majority(num_instances, 0);
  if (dense_votes) {
    std::vector<int64_t> votes(static_cast<size_t>(num_instances * num_labels), 0);
    for (int64_t t = 0; t < threads; ++t)
      for (size_t i = 0; i < votes.size(); ++i) votes[i] += local_votes[t][i];
    for (int64_t i = 0; i < num_instances; ++i) majority[i] = vote(votes.data() + i * num_labels, num_labels);
  } else {  // many instances and classes: count (instance, class) pairs by sorting
    std::vector<uint64_t> keys;
    for (int64_t p = 0; p < n; ++p)
      if (is_thing_pixel[p]) keys.push_back((uint64_t(instances.index(ins[p])) << 32) | uint64_t(class_index[p]));
    std::sort(keys.begin(), keys.end());
    std::vector<int64_t> best_count(num_instances, 0);
    for (size_t i = 0; i < keys.size();) {
      size_t j = i;
      while (j < keys.size() && keys[j] == keys[i]) ++j;
      const int64_t instance = static_cast<int64_t>(keys[i] >> 32), count = static_cast<int64_t>(j - i);
      if (count > best_count[instance]) {  // runs come in increasing class order: ties keep the first
        best_count[instance] = count;
        majority[instance] = static_cast<int64_t>(keys[i] & 0xffffffffu);
      }
      i = j;
    }
  }
  const MergePlan plan = plan_merge(classes.values(), majority, stuff_area_of.data(), thing_ids, label_divisor,
                                    stuff_area);
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      out[p] = deeplab_math::painted(is_thing_pixel[p] ? instances.index(ins[p]) : -1, ins[p], class_index[p],
                                     plan.instance_value.data(), plan.stuff_value.data(), plan.stuff_keep.data(),
                                     void_label);
  });
}

at::Tensor centers_tensor(const std::vector<int64_t>& flat, int64_t width) {
  at::Tensor centers = at::empty({static_cast<int64_t>(flat.size()), 2}, at::kLong);
  int64_t* c = centers.data_ptr<int64_t>();
  for (size_t i = 0; i < flat.size(); ++i) {
    c[2 * i] = flat[i] / width;
    c[2 * i + 1] = flat[i] % width;
  }
  return centers;
}

std::vector<int64_t> centers_of(const at::Tensor& heatmap, double threshold, int64_t nms_kernel,
                                std::optional<int64_t> top_k) {
  const at::Tensor hm = heatmap.contiguous();
  const int64_t height = hm.size(-2), width = hm.size(-1);
  std::vector<int64_t> flat;
  AT_DISPATCH_FLOATING_TYPES(hm.scalar_type(), "find_instance_center", [&] {
    flat = find_centers<scalar_t>(hm.data_ptr<scalar_t>(), height, width, threshold, nms_kernel, top_k);
  });
  return flat;
}

std::vector<uint8_t> thing_mask_from(const CompactIds& classes, const at::Tensor& sem,
                                     const std::optional<at::Tensor>& foreground, at::IntArrayRef thing_ids) {
  const int64_t n = sem.numel();
  std::vector<uint8_t> mask(n);
  if (foreground.has_value()) {
    const at::Tensor fg = foreground->contiguous();
    AT_DISPATCH_ALL_TYPES_AND(at::kBool, fg.scalar_type(), "foreground_mask", [&] {
      const scalar_t* f = fg.data_ptr<scalar_t>();
      at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) mask[p] = f[p] > scalar_t(0);
      });
    });
  } else {
    const int64_t* s = sem.data_ptr<int64_t>();
    const std::unordered_set<int64_t> things(thing_ids.begin(), thing_ids.end());
    std::vector<uint8_t> is_thing_class(classes.size());
    for (int64_t c = 0; c < classes.size(); ++c) is_thing_class[c] = things.count(classes.values()[c]) > 0;
    at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) mask[p] = is_thing_class[classes.index(s[p])];
    });
  }
  return mask;
}

}  // namespace

at::Tensor find_instance_center_cpu(const at::Tensor& center_heatmap, double threshold, int64_t nms_kernel,
                                    std::optional<int64_t> top_k) {
  deeplab_checks::check_centers(center_heatmap, nms_kernel, top_k);
  return centers_tensor(centers_of(center_heatmap, threshold, nms_kernel, top_k), center_heatmap.size(2));
}

at::Tensor group_pixels_cpu(const at::Tensor& center_points, const at::Tensor& offsets) {
  deeplab_checks::check_group(center_points, offsets);
  const int64_t height = offsets.size(1), width = offsets.size(2);
  at::Tensor out = at::empty({1, height, width}, offsets.options().dtype(at::kLong));
  const at::Tensor centers = center_points.contiguous();
  const at::Tensor off = offsets.contiguous();
  const int64_t num_centers = centers.size(0);
  if (num_centers == 0) return out.zero_();
  AT_DISPATCH_FLOATING_TYPES(off.scalar_type(), "group_pixels", [&] {
    group<scalar_t>(centers.data_ptr<int64_t>(), num_centers, off.data_ptr<scalar_t>(), height, width, nullptr,
                    out.data_ptr<int64_t>());
  });
  return out;
}

at::Tensor merge_semantic_and_instance_cpu(const at::Tensor& sem_seg, const at::Tensor& ins_seg,
                                           const at::Tensor& semantic_thing_seg, int64_t label_divisor,
                                           at::IntArrayRef thing_ids, int64_t stuff_area, int64_t void_label) {
  deeplab_checks::check_merge(sem_seg, ins_seg, semantic_thing_seg, label_divisor, thing_ids);
  const at::Tensor sem = sem_seg.to(at::kLong).contiguous();
  const at::Tensor ins = ins_seg.to(at::kLong).contiguous();
  const at::Tensor thing = semantic_thing_seg.contiguous();
  const int64_t n = sem.numel();
  std::vector<uint8_t> is_thing(n);
  const int64_t* i = ins.data_ptr<int64_t>();
  AT_DISPATCH_ALL_TYPES_AND(at::kBool, thing.scalar_type(), "semantic_thing_seg", [&] {
    const scalar_t* t = thing.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) is_thing[p] = i[p] > 0 && t[p] > scalar_t(0);
    });
  });
  at::Tensor out = at::empty(sem.sizes(), sem.options());
  const CompactIds classes(sem.data_ptr<int64_t>(), n, nullptr);
  merge(classes, sem.data_ptr<int64_t>(), i, is_thing.data(), n, label_divisor, thing_ids.vec(), stuff_area,
        void_label, out.data_ptr<int64_t>());
  return out;
}

std::tuple<at::Tensor, at::Tensor> get_panoptic_segmentation_cpu(
    const at::Tensor& sem_seg, const at::Tensor& center_heatmap, const at::Tensor& offsets, at::IntArrayRef thing_ids,
    int64_t label_divisor, int64_t stuff_area, int64_t void_label, double threshold, int64_t nms_kernel,
    std::optional<int64_t> top_k, const std::optional<at::Tensor>& foreground_mask) {
  deeplab_checks::check_panoptic(sem_seg, center_heatmap, offsets, label_divisor, thing_ids, nms_kernel, top_k,
                                 foreground_mask);
  const int64_t height = sem_seg.size(1), width = sem_seg.size(2), n = height * width;
  const at::Tensor sem = sem_seg.to(at::kLong).contiguous();
  const CompactIds classes(sem.data_ptr<int64_t>(), n, nullptr);
  const std::vector<uint8_t> thing = thing_mask_from(classes, sem, foreground_mask, thing_ids);
  const std::vector<int64_t> flat = centers_of(center_heatmap, threshold, nms_kernel, top_k);
  at::Tensor centers = centers_tensor(flat, width);
  std::vector<int64_t> ins(n, 0);
  if (!flat.empty()) {
    const at::Tensor off = offsets.contiguous();
    AT_DISPATCH_FLOATING_TYPES(off.scalar_type(), "group_pixels", [&] {
      group<scalar_t>(centers.data_ptr<int64_t>(), centers.size(0), off.data_ptr<scalar_t>(), height, width,
                      thing.data(), ins.data());
    });
  }
  // Without centers detectron2's instance map is all zero, so no pixel is a thing pixel.
  std::vector<uint8_t> is_thing(n);
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) is_thing[p] = ins[p] > 0;
  });
  at::Tensor panoptic = at::empty({1, height, width}, sem.options());
  merge(classes, sem.data_ptr<int64_t>(), ins.data(), is_thing.data(), n, label_divisor, thing_ids.vec(), stuff_area,
        void_label, panoptic.data_ptr<int64_t>());
  return {panoptic, centers.unsqueeze(0)};
}

TORCH_LIBRARY_FRAGMENT(panoptic_ops, m) {
  m.def("find_instance_center(Tensor center_heatmap, float threshold, int nms_kernel, int? top_k) -> Tensor");
  m.def("group_pixels(Tensor center_points, Tensor offsets) -> Tensor");
  m.def(
      "merge_semantic_and_instance(Tensor sem_seg, Tensor ins_seg, Tensor semantic_thing_seg, int label_divisor, "
      "int[] thing_ids, int stuff_area, int void_label) -> Tensor");
  m.def(
      "get_panoptic_segmentation(Tensor sem_seg, Tensor center_heatmap, Tensor offsets, int[] thing_ids, "
      "int label_divisor, int stuff_area, int void_label, float threshold, int nms_kernel, int? top_k, "
      "Tensor? foreground_mask) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(panoptic_ops, CPU, m) {
  m.impl("find_instance_center", &find_instance_center_cpu);
  m.impl("group_pixels", &group_pixels_cpu);
  m.impl("merge_semantic_and_instance", &merge_semantic_and_instance_cpu);
  m.impl("get_panoptic_segmentation", &get_panoptic_segmentation_cpu);
}

}  // namespace panoptic_ops
