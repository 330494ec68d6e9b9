// Matrix NMS (SOLO / mmdetection mask_matrix_nms) and Panoptic FCN's class-aware kernel fusion.
// Both are dense matrix algorithms, so they are written with ATen ops, one device-agnostic
// implementation (CompositeExplicitAutograd), op-for-op the computation of the originals so
// that results are bit-identical to them on CPU and CUDA.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/checks.h"

namespace panoptic_ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> matrix_nms(const at::Tensor& masks, const at::Tensor& labels,
                                                          const at::Tensor& scores, c10::string_view kernel,
                                                          double sigma, double filter_thr, int64_t nms_pre,
                                                          int64_t max_num, const std::optional<at::Tensor>& mask_area) {
  checks::check_dims(masks, "masks", 3);
  const int64_t n = masks.size(0);
  checks::check_shape(labels, "labels", {n});
  checks::check_integer(labels, "labels");
  checks::check_shape(scores, "scores", {n});
  checks::check_float(scores, "scores");
  TORCH_CHECK_VALUE(kernel == "gaussian" || kernel == "linear", "kernel must be 'gaussian' or 'linear', got '", kernel,
                    "'");
  if (mask_area.has_value()) checks::check_shape(*mask_area, "mask_area", {n});
  checks::check_same_device({{"masks", &masks},
                             {"labels", &labels},
                             {"scores", &scores},
                             {"mask_area", checks::optional_ptr(mask_area)}});
  const auto index_options = labels.options().dtype(at::kLong);
  if (n == 0) return {scores.new_zeros({0}), labels.new_zeros({0}), at::zeros({0}, index_options)};
  at::Tensor area = mask_area.has_value() ? *mask_area : masks.sum({1, 2}).to(at::kFloat);

  auto [sorted_scores, order] = at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true);
  at::Tensor keep_inds = order;
  if (nms_pre > 0 && n > nms_pre) {
    order = order.slice(0, 0, nms_pre);
    keep_inds = keep_inds.slice(0, 0, nms_pre);
    sorted_scores = sorted_scores.slice(0, 0, nms_pre);
  }
  const at::Tensor sorted_masks = masks.index_select(0, order);
  area = area.index_select(0, order);
  at::Tensor sorted_labels = labels.index_select(0, order);
  const int64_t k = sorted_labels.size(0);

  const at::Tensor flat = sorted_masks.reshape({k, -1}).to(at::kFloat);
  const at::Tensor inter = at::mm(flat, flat.transpose(1, 0));
  const at::Tensor expanded_area = area.expand({k, k});
  const at::Tensor iou = (inter / (expanded_area + expanded_area.transpose(1, 0) - inter)).triu(1);
  const at::Tensor expanded_labels = sorted_labels.expand({k, k});
  const at::Tensor same_label = (expanded_labels == expanded_labels.transpose(1, 0)).triu(1);
  at::Tensor compensate = std::get<0>((iou * same_label).max(0));
  compensate = compensate.expand({k, k}).transpose(1, 0);
  const at::Tensor decay_iou = iou * same_label;
  at::Tensor coefficient;
  if (kernel == "gaussian") {
    const at::Tensor decay = at::exp(decay_iou.pow(2) * (-1 * sigma));
    const at::Tensor compensation = at::exp(compensate.pow(2) * (-1 * sigma));
    coefficient = std::get<0>((decay / compensation).min(0));
  } else {
    coefficient = std::get<0>(((1 - decay_iou) / (1 - compensate)).min(0));
  }
  at::Tensor new_scores = sorted_scores * coefficient;

  if (filter_thr > 0) {
    const at::Tensor keep = (new_scores >= filter_thr).nonzero().squeeze(1);
    keep_inds = keep_inds.index_select(0, keep);
    new_scores = new_scores.index_select(0, keep);
    sorted_labels = sorted_labels.index_select(0, keep);
  }
  auto [final_scores, final_order] = at::sort(new_scores, /*stable=*/true, /*dim=*/0, /*descending=*/true);
  if (max_num > 0 && final_order.size(0) > max_num) {
    final_order = final_order.slice(0, 0, max_num);
    final_scores = final_scores.slice(0, 0, max_num);
  }
  return {final_scores, sorted_labels.index_select(0, final_order), keep_inds.index_select(0, final_order)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kernel_fusion(const at::Tensor& kernels,
                                                                         const at::Tensor& scores,
                                                                         const at::Tensor& labels, double threshold) {
  checks::check_dims(kernels, "kernels", 2);
  checks::check_float(kernels, "kernels");
  const int64_t n = kernels.size(0);
  checks::check_shape(scores, "scores", {n});
  checks::check_shape(labels, "labels", {n});
  checks::check_integer(labels, "labels");
  checks::check_same_device({{"kernels", &kernels}, {"scores", &scores}, {"labels", &labels}});
  const at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor weight = kernels.index_select(0, order);
  const at::Tensor sorted_labels = labels.index_select(0, order);
  // Cosine similarity as Panoptic FCN's cal_similarity: norms clamped at 1e-8.
  const at::Tensor normalized = weight / at::linalg_vector_norm(weight, 2, {1}).unsqueeze(-1).clamp_min(1e-8);
  const at::Tensor similarity = at::mm(normalized, normalized.transpose(0, 1));
  const at::Tensor same = (similarity.triu(0) >= threshold) & (sorted_labels.unsqueeze(-1) == sorted_labels.unsqueeze(0));
  // A kernel starts a group unless an earlier kernel already claimed it (column sum < 2 on the
  // diagonal); each kernel joins only the first group that claims it.
  const at::Tensor first_claim = at::cumsum(same.to(kernels.scalar_type()), 0) < 2;
  const at::Tensor kept = first_claim.diagonal(0).nonzero().squeeze(1);
  const at::Tensor members = (same.index_select(0, kept) & first_claim.index_select(0, kept)).to(kernels.scalar_type());
  const at::Tensor count = members.sum(1, /*keepdim=*/true);
  at::Tensor fused = at::mm(members, weight) / count;
  // A group without members (a kernel not similar to itself: all-zero kernels, or threshold > 1)
  // would be 0/0 = NaN in Panoptic FCN; it keeps its own kernel instead.
  fused = at::where(count > 0, fused, weight.index_select(0, kept));
  return {fused, scores.index_select(0, order.index_select(0, kept)), sorted_labels.index_select(0, kept),
          order.index_select(0, kept)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(panoptic_ops, m) {
  m.def(
      "matrix_nms(Tensor masks, Tensor labels, Tensor scores, str kernel, float sigma, float filter_thr, "
      "int nms_pre, int max_num, Tensor? mask_area) -> (Tensor, Tensor, Tensor)");
  m.def("kernel_fusion(Tensor kernels, Tensor scores, Tensor labels, float threshold) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(panoptic_ops, CompositeExplicitAutograd, m) {
  m.impl("matrix_nms", &matrix_nms);
  m.impl("kernel_fusion", &kernel_fusion);
}

}  // namespace panoptic_ops
