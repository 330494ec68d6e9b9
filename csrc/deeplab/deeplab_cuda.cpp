// CUDA glue of the Panoptic-DeepLab ops: compiled against CPU torch headers; kernels are in
// deeplab_kernel.cu. Selection steps (top-k, nonzero, unique) use ATen ops on the device.
#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include "common/merge_plan.h"
#include "deeplab/deeplab_checks.h"
#include "deeplab/deeplab_launch.h"

namespace panoptic_ops {
namespace {

void* stream_of(const at::Tensor& t) { return at::accelerator::getCurrentStream(t.device().index()).native_handle(); }

at::Tensor centers_cuda(const at::Tensor& center_heatmap, double threshold, int64_t nms_kernel,
                        std::optional<int64_t> top_k) {
  const at::Tensor hm = center_heatmap.contiguous();
  const int64_t height = hm.size(1), width = hm.size(2);
  at::Tensor peaks = at::empty_like(hm);
  cuda::center_peaks(hm.data_ptr(), peaks.data_ptr(), hm.scalar_type() == at::kDouble, height, width, threshold,
                     (nms_kernel - 1) / 2, stream_of(hm));
  at::Tensor kth = at::zeros({}, peaks.options());
  if (top_k.has_value() && *top_k <= peaks.numel()) {
    kth = std::get<0>(at::topk(peaks.flatten(), *top_k)).select(0, *top_k - 1).clamp_min(0);
  }
  return at::nonzero(peaks.squeeze(0) > kth);
}

// (class index per pixel, instance index per pixel or -1, merged panoptic map) for flat inputs.
at::Tensor merge_cuda_flat(const at::Tensor& sem, const at::Tensor& ins, const at::Tensor& is_thing,
                           int64_t label_divisor, at::IntArrayRef thing_ids, int64_t stuff_area, int64_t void_label) {
  const int64_t n = sem.numel();
  at::Tensor out = at::empty_like(sem);
  if (n == 0) return out;
  auto [labels, class_index] = at::_unique(sem, /*sorted=*/true, /*return_inverse=*/true);
  class_index = class_index.to(at::kLong).contiguous();
  const at::Tensor instance_values = std::get<0>(at::_unique(ins.masked_select(is_thing), true, false));
  at::Tensor instance_index =
      at::where(is_thing, at::searchsorted(instance_values, ins), at::full({}, -1, ins.options())).contiguous();
  const int64_t num_labels = labels.size(0), num_instances = instance_values.size(0);
  at::Tensor votes = at::zeros({(num_instances + 1) * num_labels}, sem.options());
  cuda::merge_votes(class_index.data_ptr<int64_t>(), instance_index.data_ptr<int64_t>(), ins.data_ptr<int64_t>(), n,
                    num_instances, num_labels, reinterpret_cast<unsigned long long*>(votes.data_ptr<int64_t>()),
                    stream_of(sem));
  const at::Tensor votes_cpu = votes.cpu();
  const at::Tensor labels_cpu = labels.cpu().contiguous();
  const int64_t* v = votes_cpu.data_ptr<int64_t>();
  std::vector<int64_t> majority(num_instances);
  for (int64_t i = 0; i < num_instances; ++i) majority[i] = vote(v + i * num_labels, num_labels);
  const std::vector<int64_t> label_list(labels_cpu.data_ptr<int64_t>(), labels_cpu.data_ptr<int64_t>() + num_labels);
  const MergePlan plan = plan_merge(label_list, majority, v + num_instances * num_labels, thing_ids.vec(),
                                    label_divisor, stuff_area);
  const auto long_cpu = at::TensorOptions().dtype(at::kLong);
  const at::Tensor instance_value = at::tensor(plan.instance_value, long_cpu).to(sem.device());
  const at::Tensor stuff_value = at::tensor(plan.stuff_value, long_cpu).to(sem.device());
  const at::Tensor stuff_keep =
      at::tensor(std::vector<int64_t>(plan.stuff_keep.begin(), plan.stuff_keep.end()), long_cpu)
          .to(at::kByte)
          .to(sem.device());
  cuda::merge_paint(class_index.data_ptr<int64_t>(), instance_index.data_ptr<int64_t>(), ins.data_ptr<int64_t>(), n,
                    instance_value.data_ptr<int64_t>(), stuff_value.data_ptr<int64_t>(), stuff_keep.data_ptr<uint8_t>(),
                    void_label, out.data_ptr<int64_t>(), stream_of(sem));
  return out;
}

at::Tensor find_instance_center_cuda(const at::Tensor& center_heatmap, double threshold, int64_t nms_kernel,
                                     std::optional<int64_t> top_k) {
  const c10::DeviceGuard guard(center_heatmap.device());
  deeplab_checks::check_centers(center_heatmap, nms_kernel, top_k);
  return centers_cuda(center_heatmap, threshold, nms_kernel, top_k);
}

at::Tensor group_pixels_cuda(const at::Tensor& center_points, const at::Tensor& offsets) {
  const c10::DeviceGuard guard(offsets.device());
  deeplab_checks::check_group(center_points, offsets);
  const at::Tensor off = offsets.contiguous();
  const at::Tensor centers = center_points.contiguous();
  const int64_t height = off.size(1), width = off.size(2);
  at::Tensor out = at::zeros({1, height, width}, off.options().dtype(at::kLong));
  if (centers.size(0) == 0) return out;
  cuda::group_pixels(centers.data_ptr<int64_t>(), centers.size(0), off.data_ptr(), off.scalar_type() == at::kDouble,
                     height, width, nullptr, out.data_ptr<int64_t>(), stream_of(off));
  return out;
}

at::Tensor merge_semantic_and_instance_cuda(const at::Tensor& sem_seg, const at::Tensor& ins_seg,
                                            const at::Tensor& semantic_thing_seg, int64_t label_divisor,
                                            at::IntArrayRef thing_ids, int64_t stuff_area, int64_t void_label) {
  const c10::DeviceGuard guard(sem_seg.device());
  deeplab_checks::check_merge(sem_seg, ins_seg, semantic_thing_seg, label_divisor, thing_ids);
  const at::Tensor sem = sem_seg.to(at::kLong).contiguous().flatten();
  const at::Tensor ins = ins_seg.to(at::kLong).contiguous().flatten();
  const at::Tensor is_thing = (ins > 0) & (semantic_thing_seg.flatten() > 0);
  return merge_cuda_flat(sem, ins, is_thing, label_divisor, thing_ids, stuff_area, void_label).view(sem_seg.sizes());
}

std::tuple<at::Tensor, at::Tensor> get_panoptic_segmentation_cuda(
    const at::Tensor& sem_seg, const at::Tensor& center_heatmap, const at::Tensor& offsets, at::IntArrayRef thing_ids,
    int64_t label_divisor, int64_t stuff_area, int64_t void_label, double threshold, int64_t nms_kernel,
    std::optional<int64_t> top_k, const std::optional<at::Tensor>& foreground_mask) {
  const c10::DeviceGuard guard(sem_seg.device());
  deeplab_checks::check_panoptic(sem_seg, center_heatmap, offsets, label_divisor, thing_ids, nms_kernel, top_k,
                                 foreground_mask);
  const int64_t height = sem_seg.size(1), width = sem_seg.size(2);
  const at::Tensor sem = sem_seg.to(at::kLong).contiguous().flatten();
  at::Tensor thing;
  if (foreground_mask.has_value()) {
    thing = (foreground_mask->flatten() > 0).to(at::kByte).contiguous();
  } else {
    const at::Tensor ids = at::tensor(thing_ids.vec(), at::TensorOptions().dtype(at::kLong)).to(sem.device());
    thing = at::isin(sem, ids).to(at::kByte).contiguous();
  }
  const at::Tensor centers = centers_cuda(center_heatmap, threshold, nms_kernel, top_k);
  at::Tensor ins = at::zeros({height * width}, sem.options());
  if (centers.size(0) > 0) {
    const at::Tensor off = offsets.contiguous();
    cuda::group_pixels(centers.data_ptr<int64_t>(), centers.size(0), off.data_ptr(), off.scalar_type() == at::kDouble,
                       height, width, thing.data_ptr<uint8_t>(), ins.data_ptr<int64_t>(), stream_of(off));
  }
  at::Tensor panoptic =
      merge_cuda_flat(sem, ins, ins > 0, label_divisor, thing_ids, stuff_area, void_label).view({1, height, width});
  return {panoptic, centers.unsqueeze(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(panoptic_ops, CUDA, m) {
  m.impl("find_instance_center", &find_instance_center_cuda);
  m.impl("group_pixels", &group_pixels_cuda);
  m.impl("merge_semantic_and_instance", &merge_semantic_and_instance_cuda);
  m.impl("get_panoptic_segmentation", &get_panoptic_segmentation_cuda);
}

}  // namespace panoptic_ops
