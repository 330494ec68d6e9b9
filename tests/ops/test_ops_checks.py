"""One check, one message: the wrappers in panoptic_ops and direct torch.ops callers get the same
error (type and text) from the checks the CPU and CUDA glue share (csrc/*/..._checks.h)."""

import re

import pytest
import torch

import panoptic_ops

OPS = torch.ops.panoptic_ops
LONG = torch.int64


def _deeplab(device):
    sem = torch.zeros(1, 4, 5, dtype=LONG, device=device)
    heat = torch.zeros(1, 4, 5, device=device)
    off = torch.zeros(2, 4, 5, device=device)
    labels = {"label_divisor": 1000, "thing_ids": [1], "stuff_area": 0, "void_label": 0}
    pan = ([1], 1000, 0, 0)  # the same labels in the op's order: thing_ids, label_divisor, stuff_area, void_label

    def both(args, kwargs, op_args):
        return (lambda: panoptic_ops.get_panoptic_segmentation(*args, **kwargs),
                lambda: OPS.get_panoptic_segmentation(*op_args))  # fmt: skip

    return [
        (ValueError, "center_heatmap must have shape [1, *, *], got [2, 4, 5]",
         lambda: panoptic_ops.find_instance_center(torch.zeros(2, 4, 5, device=device)),
         lambda: OPS.find_instance_center(torch.zeros(2, 4, 5, device=device), 0.1, 3, None)),
        (TypeError, "center_heatmap must have dtype float32, float64; got float16",
         lambda: panoptic_ops.find_instance_center(heat.half()),
         lambda: OPS.find_instance_center(heat.half(), 0.1, 3, None)),
        (ValueError, "nms_kernel must be a positive odd integer (max-pool window), got 4",
         lambda: panoptic_ops.find_instance_center(heat, nms_kernel=4),
         lambda: OPS.find_instance_center(heat, 0.1, 4, None)),
        (ValueError, "top_k must be None or a positive integer, got 0",
         lambda: panoptic_ops.find_instance_center(heat, top_k=0),
         lambda: OPS.find_instance_center(heat, 0.1, 3, 0)),
        (TypeError, "center_points must have dtype int64; got float32",
         lambda: panoptic_ops.group_pixels(torch.zeros(1, 2, device=device), off),
         lambda: OPS.group_pixels(torch.zeros(1, 2, device=device), off)),
        (ValueError, "offsets must have shape [2, *, *], got [3, 4, 5]",
         lambda: panoptic_ops.group_pixels(torch.zeros(1, 2, dtype=LONG, device=device), off[:1].expand(3, 4, 5)),
         lambda: OPS.group_pixels(torch.zeros(1, 2, dtype=LONG, device=device), off[:1].expand(3, 4, 5))),
        (ValueError, "ins_seg must have shape [1, 4, 5], got [1, 4, 4]",
         lambda: panoptic_ops.merge_semantic_and_instance(sem, sem[..., :4], sem, **labels),
         lambda: OPS.merge_semantic_and_instance(sem, sem[..., :4], sem, 1000, [1], 0, 0)),
        (TypeError, "semantic_thing_seg must have dtype bool, int64, int32, int16, int8, uint8; got float32",
         lambda: panoptic_ops.merge_semantic_and_instance(sem, sem, heat, **labels),
         lambda: OPS.merge_semantic_and_instance(sem, sem, heat, 1000, [1], 0, 0)),
        (ValueError, "label_divisor must lie in [1, 9223372036854775807], got 0",
         lambda: panoptic_ops.merge_semantic_and_instance(sem, sem, sem, **{**labels, "label_divisor": 0}),
         lambda: OPS.merge_semantic_and_instance(sem, sem, sem, 0, [1], 0, 0)),
        (ValueError, "thing_ids must lie in [0, 2**63), got [-1]",
         *both((sem, heat, off), {**labels, "thing_ids": [-1]},
               (sem, heat, off, [-1], 1000, 0, 0, 0.1, 3, None, None))),
        (TypeError, "sem_seg must have dtype int64, int32, int16, int8, uint8; got float32",
         *both((heat, heat, off), labels, (heat, heat, off, *pan, 0.1, 3, None, None))),
        (ValueError, "offsets must have shape [2, 4, 5], got [2, 4, 4]",
         *both((sem, heat, off[..., :4]), labels, (sem, heat, off[..., :4], *pan, 0.1, 3, None, None))),
        (ValueError, "foreground_mask must have shape [1, 4, 5], got [1, 4, 4]",
         *both((sem, heat, off), {**labels, "foreground_mask": sem[..., :4]},
               (sem, heat, off, *pan, 0.1, 3, None, sem[..., :4]))),
    ]  # fmt: skip


def _nms(device):
    boxes = torch.zeros(3, 4, device=device)
    scores = torch.zeros(3, device=device)
    return [
        (ValueError, "boxes must have shape [*, 4], got [3, 5]",
         lambda: panoptic_ops.nms(torch.zeros(3, 5, device=device), scores, 0.5),
         lambda: OPS.nms(torch.zeros(3, 5, device=device), scores, 0.5)),
        (ValueError, "scores must have shape [3], got [4]",
         lambda: panoptic_ops.nms(boxes, torch.zeros(4, device=device), 0.5),
         lambda: OPS.nms(boxes, torch.zeros(4, device=device), 0.5)),
        (TypeError, "boxes must have dtype float32, float64",
         lambda: panoptic_ops.nms(boxes.long(), scores, 0.5), lambda: OPS.nms(boxes.long(), scores, 0.5)),
        (TypeError, "scores must be a floating tensor, got int64",
         lambda: panoptic_ops.nms(boxes, scores.long(), 0.5), lambda: OPS.nms(boxes, scores.long(), 0.5)),
        (TypeError, "idxs must have dtype int64, int32, int16, int8, uint8; got float32",
         lambda: panoptic_ops.batched_nms(boxes, scores, scores, 0.5),
         lambda: OPS.batched_nms(boxes, scores, scores, 0.5)),
        (ValueError, "idxs must have shape [3], got [2]",
         lambda: panoptic_ops.batched_nms(boxes, scores, scores[:2].long(), 0.5),
         lambda: OPS.batched_nms(boxes, scores, scores[:2].long(), 0.5)),
    ]  # fmt: skip


def _fusion(device):
    masks = torch.zeros(2, 4, 4, device=device)
    labels = torch.zeros(2, dtype=LONG, device=device)
    scores = torch.zeros(2, device=device)
    kernels = torch.zeros(2, 3, device=device)
    return [
        (ValueError, "masks must have 3 dimensions, got shape [2, 16]",
         lambda: panoptic_ops.matrix_nms(masks.flatten(1), labels, scores),
         lambda: OPS.matrix_nms(masks.flatten(1), labels, scores, "gaussian", 2.0, -1.0, -1, -1, None)),
        (ValueError, "labels must have shape [2], got [3]",
         lambda: panoptic_ops.matrix_nms(masks, torch.zeros(3, dtype=LONG, device=device), scores),
         lambda: OPS.matrix_nms(masks, torch.zeros(3, dtype=LONG, device=device), scores, "gaussian", 2.0, -1.0, -1,
                                -1, None)),
        (ValueError, "kernel must be 'gaussian' or 'linear', got 'box'",
         lambda: panoptic_ops.matrix_nms(masks, labels, scores, kernel="box"),
         lambda: OPS.matrix_nms(masks, labels, scores, "box", 2.0, -1.0, -1, -1, None)),
        (TypeError, "scores must have dtype float32, float64; got int64",
         lambda: panoptic_ops.matrix_nms(masks, labels, labels),
         lambda: OPS.matrix_nms(masks, labels, labels, "gaussian", 2.0, -1.0, -1, -1, None)),
        (ValueError, "mask_area must have shape [2], got [1]",
         lambda: panoptic_ops.matrix_nms(masks, labels, scores, mask_area=scores[:1]),
         lambda: OPS.matrix_nms(masks, labels, scores, "gaussian", 2.0, -1.0, -1, -1, scores[:1])),
        (ValueError, "kernels must have 2 dimensions, got shape [2, 3, 1]",
         lambda: panoptic_ops.kernel_fusion(kernels[..., None], scores, labels),
         lambda: OPS.kernel_fusion(kernels[..., None], scores, labels, 0.9)),
        (TypeError, "labels must have dtype int64, int32, int16, int8, uint8; got float32",
         lambda: panoptic_ops.kernel_fusion(kernels, scores, scores),
         lambda: OPS.kernel_fusion(kernels, scores, scores, 0.9)),
    ]  # fmt: skip


def _box_similarity(device):
    emb = torch.zeros(1, 3, 4, 4, device=device)
    queries = torch.zeros(1, 2, 3, device=device)
    boxes = torch.zeros(1, 2, 4, device=device)
    return [
        (ValueError, "embeddings must have 4 dimensions, got shape [3, 4, 4]",
         lambda: panoptic_ops.box_filtered_similarity(emb[0], queries, boxes, 4),
         lambda: OPS.box_filtered_similarity(emb[0], queries, boxes, 4)),
        (ValueError, "queries must have shape [1, *, 3], got [1, 2, 5]",
         lambda: panoptic_ops.box_filtered_similarity(emb, torch.zeros(1, 2, 5, device=device), boxes, 4),
         lambda: OPS.box_filtered_similarity(emb, torch.zeros(1, 2, 5, device=device), boxes, 4)),
        (ValueError, "boxes must have shape [1, 2, 4], got [1, 3, 4]",
         lambda: panoptic_ops.box_filtered_assign(emb, queries, torch.zeros(1, 3, 4, device=device), 4),
         lambda: OPS.box_filtered_assign(emb, queries, torch.zeros(1, 3, 4, device=device), 4)),
        (TypeError, "embeddings must be a floating tensor, got int64",
         lambda: panoptic_ops.box_filtered_similarity(emb.long(), queries, boxes, 4),
         lambda: OPS.box_filtered_similarity(emb.long(), queries, boxes, 4)),
        (ValueError, "stride must be a positive integer (image pixels per embedding pixel), got 0",
         lambda: panoptic_ops.box_filtered_assign(emb, queries, boxes, 0),
         lambda: OPS.box_filtered_assign(emb, queries, boxes, 0)),
        (ValueError, "box_filtered_assign needs at least one query: queries has shape [1, 0, 3]",
         lambda: panoptic_ops.box_filtered_assign(emb, queries[:, :0], boxes[:, :0], 4),
         lambda: OPS.box_filtered_assign(emb, queries[:, :0], boxes[:, :0], 4)),
    ]  # fmt: skip


FAMILIES = {"deeplab": _deeplab, "nms": _nms, "fusion": _fusion, "box_similarity": _box_similarity}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_wrapper_and_op_raise_the_same_error(family, device):
    for error, message, wrapper_call, op_call in FAMILIES[family](device):
        texts = []
        for call in (wrapper_call, op_call):
            with pytest.raises(error, match=re.escape(message)) as caught:
                call()
            texts.append(str(caught.value))
        assert texts[0] == texts[1], message


@pytest.mark.parametrize(
    ("call", "args", "error", "message"),
    [
        (panoptic_ops.nms, (torch.zeros(3, 5), torch.zeros(3), 0.5), ValueError,
         "boxes must have shape [*, 4], got [3, 5]"),
        (panoptic_ops.box_filtered_similarity, (torch.zeros(3, 4, 4), torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), 4),
         ValueError, "embeddings must have 4 dimensions, got shape [3, 4, 4]"),
        (panoptic_ops.kernel_fusion, (torch.zeros(2), torch.zeros(2), torch.zeros(2, dtype=LONG)), ValueError,
         "kernels must have 2 dimensions, got shape [2]"),
        (panoptic_ops.get_panoptic_segmentation,
         (torch.zeros(1, 4, 5, dtype=LONG), torch.zeros(1, 4, 5), torch.zeros(2, 4, 4), [1], 1000, 0, 0),
         ValueError, "offsets must have shape [2, 4, 5], got [2, 4, 4]"),
        (panoptic_ops.merge_semantic_and_instance,
         (torch.zeros(1, 4, 5, dtype=LONG), torch.zeros(1, 4, 5, dtype=LONG), torch.zeros(1, 4, 5), 1000, [1], 0, 0),
         TypeError, "semantic_thing_seg must have dtype bool"),
    ],
)  # fmt: skip
def test_compiled_calls_raise_the_same_error(call, args, error, message):
    """Under torch.compile(fullgraph=True) the fake kernels only give shapes; the op's own checks
    raise when the graph runs, with the eager message."""
    torch._dynamo.reset()
    compiled = torch.compile(call, fullgraph=True, backend="aot_eager")
    with pytest.raises(error, match=re.escape(message)):
        compiled(*args)


def _on_cpu_kernel(op, *args):
    """Call the CPU (or device-agnostic) kernel of ``op`` itself: with tensors on two devices the
    dispatcher would otherwise pick the other device's kernel (meta, the fake kernel, here)."""
    key = "CompositeExplicitAutograd" if op in ("matrix_nms", "kernel_fusion") else "CPU"
    keys = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))
    return getattr(OPS, op).default.redispatch(keys, *args)


def _cpu(*shape, dtype=torch.float32):
    return torch.zeros(shape, dtype=dtype)


def _meta(*shape, dtype=torch.float32):
    return torch.zeros(shape, dtype=dtype, device="meta")


@pytest.mark.parametrize(
    ("op", "args", "names"),
    [
        ("nms", (_cpu(2, 4), _meta(2), 0.5), "boxes on cpu, scores on meta"),
        ("batched_nms", (_cpu(2, 4), _cpu(2), _meta(2, dtype=LONG), 0.5), "boxes on cpu, scores on cpu, idxs on meta"),
        ("group_pixels", (_cpu(1, 2, dtype=LONG), _meta(2, 3, 3)), "center_points on cpu, offsets on meta"),
        ("get_panoptic_segmentation",
         (_cpu(1, 3, 3, dtype=LONG), _cpu(1, 3, 3), _cpu(2, 3, 3), [1], 1000, 0, 0, 0.1, 3, None,
          _meta(1, 3, 3, dtype=torch.bool)),
         "sem_seg on cpu, center_heatmap on cpu, offsets on cpu, foreground_mask on meta"),
        ("box_filtered_assign", (_cpu(1, 3, 4, 4), _cpu(1, 2, 3), _meta(1, 2, 4), 4),
         "embeddings on cpu, queries on cpu, boxes on meta"),
        ("kernel_fusion", (_cpu(2, 3), _cpu(2), _meta(2, dtype=LONG), 0.9),
         "kernels on cpu, scores on cpu, labels on meta"),
        ("matrix_nms", (_cpu(2, 4, 4), _cpu(2, dtype=LONG), _cpu(2), "gaussian", 2.0, -1.0, -1, -1, _meta(2)),
         "masks on cpu, labels on cpu, scores on cpu, mask_area on meta"),
    ],
)  # fmt: skip
def test_tensors_on_two_devices_are_refused_by_name(op, args, names):
    """A CUDA kernel handed a host tensor would read host memory: the shared checks refuse mixed
    devices before any kernel runs. Meta stands in for the second device, so this runs anywhere."""
    with pytest.raises(ValueError, match=re.escape(f"all tensors must be on one device, got {names}")):
        _on_cpu_kernel(op, *args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA twin: no GPU on this machine")
def test_cuda_op_refuses_host_tensors():
    boxes = torch.zeros(2, 4, device="cuda")
    message = "all tensors must be on one device, got boxes on cuda:0, scores on cpu"
    with pytest.raises(ValueError, match=re.escape(message)):
        panoptic_ops.nms(boxes, torch.zeros(2), 0.5)
