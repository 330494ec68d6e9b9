// Host-side logic shared by the CPU and CUDA paths of merge_semantic_and_instance:
// from the per-instance class histograms and the stuff areas, decide every instance's panoptic
// id (majority vote, ties to the smallest class; ids numbered per class in increasing instance
// order) and which stuff classes survive the area threshold.
#pragma once

#include <cstdint>
#include <unordered_set>
#include <vector>

namespace panoptic_ops {

// Panoptic ids are computed with wrap-around, as torch's int64 arithmetic does.
inline int64_t wrap_mul_add(int64_t a, int64_t b, int64_t c) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b) + static_cast<uint64_t>(c));
}

struct MergePlan {
  std::vector<int64_t> instance_value;  // [I] panoptic id of each instance
  std::vector<int64_t> stuff_value;     // [L] panoptic id of each class' stuff region
  std::vector<uint8_t> stuff_keep;      // [L] 1 where the class is stuff and its area >= stuff_area
};

// Majority vote of one instance: the index of the largest count, ties to the smallest index
// (labels are sorted, so to the smallest class id).
inline int64_t vote(const int64_t* counts, int64_t num_labels) {
  int64_t best = 0;
  for (int64_t l = 1; l < num_labels; ++l)
    if (counts[l] > counts[best]) best = l;
  return best;
}

// labels: [L] sorted class ids; majority: [I] index into labels of each instance's vote,
// instances in increasing id order; stuff_area_of: [L] pixel counts of (class, instance id 0).
inline MergePlan plan_merge(const std::vector<int64_t>& labels, const std::vector<int64_t>& majority,
                            const int64_t* stuff_area_of, const std::vector<int64_t>& thing_ids,
                            int64_t label_divisor, int64_t stuff_area) {
  const int64_t num_labels = static_cast<int64_t>(labels.size());
  const int64_t num_instances = static_cast<int64_t>(majority.size());
  MergePlan plan;
  plan.instance_value.resize(num_instances);
  std::vector<int64_t> per_class_count(num_labels, 0);
  for (int64_t i = 0; i < num_instances; ++i) {
    const int64_t best = majority[i];
    const int64_t new_id = ++per_class_count[best];
    plan.instance_value[i] = wrap_mul_add(labels[best], label_divisor, new_id);
  }
  const std::unordered_set<int64_t> things(thing_ids.begin(), thing_ids.end());
  plan.stuff_value.resize(num_labels);
  plan.stuff_keep.resize(num_labels);
  for (int64_t l = 0; l < num_labels; ++l) {
    plan.stuff_value[l] = wrap_mul_add(labels[l], label_divisor, 0);
    plan.stuff_keep[l] = !things.count(labels[l]) && stuff_area_of[l] >= stuff_area;
  }
  return plan;
}

}  // namespace panoptic_ops
