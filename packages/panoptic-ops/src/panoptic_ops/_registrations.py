"""Fake (meta) kernels for torch.compile and autograd formulas of the compiled ops.

The fake kernels only give output shapes and tolerate any input rank: the argument checks are
the ops' own (csrc/*/..._checks.h), so under torch.compile a bad input raises the same error
when the compiled graph runs."""

from __future__ import annotations

import torch

from panoptic_ops.box_similarity import box_mask

_LIB = "panoptic_ops"


@torch.library.register_fake(f"{_LIB}::find_instance_center")
def _find_instance_center_fake(center_heatmap, threshold, nms_kernel, top_k):
    count = torch.library.get_ctx().new_dynamic_size()
    return center_heatmap.new_empty((count, 2), dtype=torch.int64)


@torch.library.register_fake(f"{_LIB}::group_pixels")
def _group_pixels_fake(center_points, offsets):
    return offsets.new_empty((1, *offsets.shape[1:]), dtype=torch.int64)


@torch.library.register_fake(f"{_LIB}::merge_semantic_and_instance")
def _merge_fake(sem_seg, ins_seg, semantic_thing_seg, label_divisor, thing_ids, stuff_area, void_label):
    return sem_seg.new_empty(sem_seg.shape, dtype=torch.int64)


@torch.library.register_fake(f"{_LIB}::get_panoptic_segmentation")
def _panoptic_fake(
    sem_seg, center_heatmap, offsets, thing_ids, label_divisor, stuff_area, void_label, threshold, nms_kernel, top_k,
    foreground_mask,
):  # fmt: skip
    count = torch.library.get_ctx().new_dynamic_size()
    return sem_seg.new_empty(sem_seg.shape, dtype=torch.int64), sem_seg.new_empty((1, count, 2), dtype=torch.int64)


def _kept_count(n):
    """The number of kept candidates out of ``n``: 0 when there are none (a static 0, not an
    unbacked size, so Inductor never lowers an index into an empty tensor with a symbolic
    length, which fails with LoweringException: IndexError), else a dynamic size <= n."""
    if isinstance(n, int):
        return 0 if n == 0 else torch.library.get_ctx().new_dynamic_size(max=n)
    # A symbolic n: Dynamo specialises sizes 0 and 1, so here n >= 2.
    return torch.library.get_ctx().new_dynamic_size()


@torch.library.register_fake(f"{_LIB}::nms")
def _nms_fake(boxes, scores, iou_threshold):
    return boxes.new_empty((_kept_count(boxes.shape[0] if boxes.dim() else 0),), dtype=torch.int64)


@torch.library.register_fake(f"{_LIB}::batched_nms")
def _batched_nms_fake(boxes, scores, idxs, iou_threshold):
    return boxes.new_empty((_kept_count(boxes.shape[0] if boxes.dim() else 0),), dtype=torch.int64)


@torch.library.register_fake(f"{_LIB}::matrix_nms")
def _matrix_nms_fake(masks, labels, scores, kernel, sigma, filter_thr, nms_pre, max_num, mask_area):
    count = _kept_count(masks.shape[0] if masks.dim() else 0)
    return scores.new_empty((count,)), labels.new_empty((count,)), labels.new_empty((count,), dtype=torch.int64)


@torch.library.register_fake(f"{_LIB}::kernel_fusion")
def _kernel_fusion_fake(kernels, scores, labels, threshold):
    count = _kept_count(kernels.shape[0] if kernels.dim() else 0)
    return (
        kernels.new_empty((count, *kernels.shape[1:])),
        scores.new_empty((count,)),
        labels.new_empty((count,)),
        labels.new_empty((count,), dtype=torch.int64),
    )


@torch.library.register_fake(f"{_LIB}::box_filtered_similarity")
def _similarity_fake(embeddings, queries, boxes, stride):
    return embeddings.new_empty((*embeddings.shape[:1], *queries.shape[1:2], *embeddings.shape[2:]))


@torch.library.register_fake(f"{_LIB}::box_filtered_assign")
def _assign_fake(embeddings, queries, boxes, stride):
    shape = (*embeddings.shape[:1], *embeddings.shape[2:])
    return embeddings.new_empty(shape, dtype=torch.int64), embeddings.new_empty(shape)


def _similarity_setup_context(ctx, inputs, output):
    embeddings, queries, boxes, stride = inputs
    ctx.save_for_backward(embeddings, queries, boxes)
    ctx.stride = stride


def _similarity_backward(ctx, grad):
    # dS/dE and dS/dQ restricted to the box: the gradient outside boxes is zero, as S is.
    embeddings, queries, boxes = ctx.saved_tensors
    masked = grad * box_mask(boxes, embeddings.shape[2], embeddings.shape[3], ctx.stride).to(grad.dtype)
    grad_embeddings = grad_queries = None
    if ctx.needs_input_grad[0]:
        grad_embeddings = torch.einsum("bnhw,bnd->bdhw", masked, queries)
    if ctx.needs_input_grad[1]:
        grad_queries = torch.einsum("bnhw,bdhw->bnd", masked, embeddings)
    return grad_embeddings, grad_queries, None, None


torch.library.register_autograd(
    f"{_LIB}::box_filtered_similarity", _similarity_backward, setup_context=_similarity_setup_context
)
