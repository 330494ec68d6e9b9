// Raw-pointer launchers of the Panoptic-DeepLab CUDA kernels (no torch headers on either side).
#pragma once

#include <cstdint>

namespace panoptic_ops::cuda {

// peaks[p] = thresholded heatmap value where p is a max-pool peak with a positive value, else -1.
// `is_double` selects float64 (else float32) for heatmap and peaks.
void center_peaks(const void* heatmap, void* peaks, bool is_double, int64_t height, int64_t width, double threshold,
                  int64_t radius, void* stream);

// out[p] = 1 + nearest center where mask[p] (mask may be null), else 0.
void group_pixels(const int64_t* centers, int64_t num_centers, const void* offsets, bool is_double, int64_t height,
                  int64_t width, const uint8_t* mask, int64_t* out, void* stream);

// votes[(instance_index[p]) * L + class_index[p]] += 1 for thing pixels (instance_index >= 0);
// votes[I * L + class_index[p]] += 1 where ins[p] == 0 (the stuff areas).
void merge_votes(const int64_t* class_index, const int64_t* instance_index, const int64_t* ins, int64_t n,
                 int64_t num_instances, int64_t num_labels, unsigned long long* votes, void* stream);

void merge_paint(const int64_t* class_index, const int64_t* instance_index, const int64_t* ins, int64_t n,
                 const int64_t* instance_value, const int64_t* stuff_value, const uint8_t* stuff_keep,
                 int64_t void_label, int64_t* out, void* stream);

}  // namespace panoptic_ops::cuda
