"""The CIAE loss (Gao et al., "Learning Category- and Instance-Aware Pixel Embedding for Fast
Panoptic Segmentation", Sec. III-B and III-C) and its category memory embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from panoptic_ops import box_filtered_similarity

__all__ = [
    "CIAELoss",
    "CategoryMemory",
    "ciae_loss",
    "memory_momentum",
    "segment_sums",
    "triplet_log_loss",
]


def memory_momentum(t: float, total: float) -> float:
    """Eq. 13: ``lambda_t = 1 - 1e-4 * (1 - t / T)^3`` (0.9999 at t = 0, rising to 1 at t = T; t clamped)."""
    frac = min(max(float(t) / float(total), 0.0), 1.0)
    return 1.0 - 1e-4 * (1.0 - frac) ** 3


def segment_sums(embeddings: torch.Tensor, labels: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the (un-normalised) embeddings of each label and its pixel count.

    Sums accumulate in float32 at least (float64 stays float64): under fp16 / bf16 autocast an
    800 x 1333 map sums hundreds of thousands of pixels, beyond fp16's 65504 and bf16's 8 bits of
    mantissa. Differentiable (the sums are cast back by the caller's arithmetic, not here).

    Args:
        embeddings (Tensor[B, D, H, W]); labels (Tensor[B, H, W] int64, -1 ignored); count: labels 0..count-1.

    Returns:
        (Tensor[count, D] sums (float32 or float64), Tensor[count] int64 pixel counts).
    """
    dim = embeddings.shape[1]
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    flat = embeddings.permute(0, 2, 3, 1).reshape(-1, dim).to(dtype)
    lab = labels.reshape(-1)
    keep = lab >= 0
    sums = torch.zeros(count, dim, dtype=dtype, device=embeddings.device).index_add(0, lab[keep], flat[keep])
    return sums, torch.bincount(lab[keep], minlength=count)[:count]


def triplet_log_loss(
    similarity: torch.Tensor,
    positive: torch.Tensor,
    margin: float = 0.15,
    top_k: int = 5,
    valid_queries: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pixel CIAE embedding loss for one set of queries (eq. 5-9 before the 1/N sum).

    With ``D = 1 - similarity`` (eq. 2; similarities of L2-normalised vectors):

    * ``d_pos^i = D(p_i, M_{y_i})`` (eq. 5); ``d_neg^{ik} = D(p_i, M_k)`` for k != y_i and 0 for
      k = y_i (eq. 6);
    * ``l'^{ik} = max(d_pos^i - d_neg^{ik} + margin, 0)`` (eq. 7);
    * ``l^{ik} = -log(1 - l'^{ik} / (2 + margin))`` (eq. 8);
    * the pixel's loss is the sum of its ``top_k`` largest ``l^{ik}`` over k (eq. 9: the terms
      above tau_K; with ties at tau_K exactly K terms are kept).

    The k = y_i term is ``-log(1 - (d_pos + margin) / (2 + margin))``, as eq. 6-8 define it. The
    argument of the log is clamped at 1e-12 (reached only when a pixel is exactly opposite its
    positive query).

    Args:
        similarity (Tensor[B, Q, H, W]): similarity of each pixel to each query.
        positive (Tensor[B, H, W] int64): index of each pixel's query, -1 for ignored pixels.
        margin: the triplet margin (0.15).
        top_k: K of eq. 9 (5).
        valid_queries (Tensor[B, Q] bool): queries that exist (padding excluded); all if None.

    Returns:
        Tensor[B, H, W]: each pixel's loss, 0 on ignored pixels.
    """
    dist_ = 1 - similarity
    pos = positive.clamp(min=0).unsqueeze(1)
    d_pos = torch.gather(dist_, 1, pos)
    is_pos = torch.zeros_like(dist_, dtype=torch.bool).scatter_(1, pos, True)
    d_neg = torch.where(is_pos, torch.zeros((), dtype=dist_.dtype, device=dist_.device), dist_)
    hinge = F.relu(d_pos - d_neg + margin)
    loss = -torch.log((1 - hinge / (2 + margin)).clamp(min=1e-12))
    if valid_queries is not None:
        loss = loss * valid_queries[:, :, None, None].to(loss.dtype)
    k = min(top_k, loss.shape[1])
    per_pixel = torch.topk(loss, k, dim=1).values.sum(1)
    return torch.where(positive >= 0, per_pixel, torch.zeros((), dtype=per_pixel.dtype, device=per_pixel.device))


def ciae_loss(
    embeddings: torch.Tensor,
    segment_map: torch.Tensor,
    category_map: torch.Tensor,
    segment_boxes: Sequence[torch.Tensor],
    memory: torch.Tensor,
    num_stuff: int,
    *,
    stride: int = 1,
    margin: float = 0.15,
    top_k: int = 5,
    alpha: float = 2.0,
    thing_weight: float = 5.0,
) -> dict[str, torch.Tensor]:
    """CIAE loss, eq. 10-12: ``L_CIAE = L_CAE + alpha * L_IAE``.

    * ``L_CAE = L_emb(P, M_t)``: the queries are the category memory embeddings ``M_t``
      (eq. 14, which replace the batch's category means M_c), no box filter.
    * ``L_IAE = L_emb(P, M_s)``: per image, the queries are the C_st stuff memory embeddings
      (``M_t``'s first ``num_stuff`` rows, replacing the stuff segment means) followed by the
      thing instances' mean embeddings ``m_s^k = L2norm(sum_{s_i = k} p_i)`` (eq. 4), summed
      over the embedding map *before* its L2 normalisation. The similarity to instance k is 0
      for pixels outside its (expanded) box (Sec. IV-B), through
      :func:`panoptic_ops.box_filtered_similarity`. Thing pixels weigh ``thing_weight`` (5).
    * ``L_emb = (1/N) sum_i (weight_i *) loss_i`` over the N labelled pixels, loss_i from
      :func:`triplet_log_loss` (margin 0.15, K = 5), with p_i the L2-normalised embeddings.

    Args:
        embeddings (Tensor[B, D, H, W]): the predicted embedding map before L2 normalisation.
        segment_map (Tensor[B, H, W] int64): s_i (stuff index, or C_st + instance), -1 ignored.
        category_map (Tensor[B, H, W] int64): c_i (index into ``memory``), -1 ignored.
        segment_boxes: per image Tensor[C_st + N_b, 4] (x1, y1, x2, y2) image-pixel boxes,
            :data:`panoptic_ops.UNBOXED` for stuff.
        memory (Tensor[C, D]): the L2-normalised category memory ``M_t`` (used as constants).
        num_stuff: C_st.
        stride: image pixels per embedding pixel (for the boxes).

    Returns:
        ``{"loss_ciae", "loss_cae", "loss_iae"}`` scalars.
    """
    batch, dim = embeddings.shape[:2]
    p = F.normalize(embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings, dim=1)
    mem = memory.detach().to(p.dtype)

    cat_sim = torch.einsum("bdhw,cd->bchw", p, mem)
    cae_pixels = triplet_log_loss(cat_sim, category_map, margin, top_k)
    n_cae = (category_map >= 0).sum().clamp(min=1)
    loss_cae = cae_pixels.sum() / n_cae

    num_queries = max((len(b) for b in segment_boxes), default=0)
    if num_queries == 0:  # no stuff class and no instance in the batch: L_IAE is empty
        loss_iae = p.sum() * 0
        return {"loss_ciae": loss_cae + alpha * loss_iae, "loss_cae": loss_cae, "loss_iae": loss_iae}
    queries = p.new_zeros(batch, num_queries, dim)
    boxes = p.new_zeros(batch, num_queries, 4)
    valid = torch.zeros(batch, num_queries, dtype=torch.bool, device=p.device)
    for b in range(batch):
        n = len(segment_boxes[b])
        sums, _ = segment_sums(embeddings[b : b + 1], segment_map[b : b + 1], n)
        means = F.normalize(sums[num_stuff:], dim=1).to(p.dtype)
        queries[b, :n] = torch.cat([mem[:num_stuff], means])
        boxes[b, :n] = segment_boxes[b].to(p)
        valid[b, :n] = True
    inst_sim = box_filtered_similarity(p, queries, boxes, stride)
    iae_pixels = triplet_log_loss(inst_sim, segment_map, margin, top_k, valid)
    weight = torch.where(segment_map >= num_stuff, thing_weight, 1.0).to(iae_pixels.dtype)
    n_iae = (segment_map >= 0).sum().clamp(min=1)
    loss_iae = (iae_pixels * weight).sum() / n_iae
    return {"loss_ciae": loss_cae + alpha * loss_iae, "loss_cae": loss_cae, "loss_iae": loss_iae}


class CategoryMemory(nn.Module):
    """Category-aware memory embeddings (Sec. III-C), saved in checkpoints as buffers.

    ``M`` starts as random unit vectors. Each training step, the mean embeddings M_c of the
    categories present in the mini-batch (over all processes when torch.distributed is
    initialised) update the memory: ``M_t = L2norm(lambda_t M_{t-1} + (1 - lambda_t) M_c)``
    (eq. 14) for those categories, with ``lambda_t`` from :func:`memory_momentum`.

    Safety: a category whose sum is not finite (an fp16 overflow, a NaN from a diverging step) is
    left unchanged, so no non-finite value ever enters the memory. Under torch.distributed the
    update is one all-reduce of the sums, the counts and the step counter, which every process
    must call at every step (``CIAELoss`` calls it on every training forward, also for batches
    without labelled pixels); processes whose step counters differ (one skipped an update) raise
    a ``RuntimeError`` instead of silently mixing different steps.

    Args:
        num_categories: C (C_st + 1 with merged things, the paper's default).
        dim: embedding dimension (32 in the paper).
        total_steps: T of eq. 13, the number of training iterations.
    """

    def __init__(self, num_categories: int, dim: int, total_steps: int) -> None:
        super().__init__()
        if total_steps <= 0:
            raise ValueError(f"CategoryMemory: total_steps must be positive, got {total_steps}")
        self.register_buffer("memory", F.normalize(torch.randn(num_categories, dim), dim=1))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("total_steps", torch.tensor(int(total_steps), dtype=torch.int64))

    def momentum(self) -> float:
        return memory_momentum(int(self.step), int(self.total_steps))

    @torch.no_grad()
    def update(self, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Fold this step's category sums (Tensor[C, D]) and pixel counts (Tensor[C]) into the memory.

        Returns:
            The updated memory M_t (Tensor[C, D]).
        """
        num, dim = self.memory.shape
        if tuple(sums.shape) != (num, dim) or tuple(counts.shape) != (num,):
            raise ValueError(
                f"CategoryMemory.update: sums {tuple(sums.shape)} and counts {tuple(counts.shape)} "
                f"must be ({num}, {dim}) and ({num},)"
            )
        sums = sums.detach().double()
        counts = counts.detach().double()
        if dist.is_available() and dist.is_initialized():
            step = float(self.step)
            packed = torch.cat([sums.reshape(-1), counts, sums.new_tensor([step, step * step, 1.0])])
            dist.all_reduce(packed)
            sums, counts = packed[: num * dim].view(num, dim), packed[num * dim : num * dim + num]
            total, squares, world = packed[-3:].tolist()
            if total != world * step or squares != world * step * step:  # zero variance <=> equal steps
                raise RuntimeError(
                    f"CategoryMemory.update: processes are at different steps (this one at {int(step)}, mean "
                    f"{total / world:.1f}); every process must update the memory at every training step"
                )
        lam = self.momentum()
        present = (counts > 0) & torch.isfinite(sums).all(dim=1)
        means = F.normalize(sums.nan_to_num(0.0, 0.0, 0.0), dim=1).to(self.memory.dtype)
        updated = F.normalize(lam * self.memory + (1 - lam) * means, dim=1)
        present &= torch.isfinite(updated).all(dim=1)
        self.memory.copy_(torch.where(present[:, None], updated, self.memory))
        self.step += 1
        return self.memory


class CIAELoss(nn.Module):
    """:func:`ciae_loss` with its :class:`CategoryMemory`: in training mode each call first updates
    the memory with the batch's category means (eq. 13-14), then computes the loss with M_t.

    Args:
        num_categories: size of the category vocabulary (``CIAETargets.num_categories``).
        num_stuff: C_st.
        dim: embedding dimension.
        total_steps: T, the number of training iterations.
        margin, top_k, alpha, thing_weight, stride: see :func:`ciae_loss`.
    """

    def __init__(
        self,
        num_categories: int,
        num_stuff: int,
        dim: int,
        total_steps: int,
        margin: float = 0.15,
        top_k: int = 5,
        alpha: float = 2.0,
        thing_weight: float = 5.0,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.memory = CategoryMemory(num_categories, dim, total_steps)
        self.num_stuff = num_stuff
        self.margin, self.top_k, self.alpha, self.thing_weight, self.stride = margin, top_k, alpha, thing_weight, stride

    def forward(
        self,
        embeddings: torch.Tensor,
        segment_map: torch.Tensor,
        category_map: torch.Tensor,
        segment_boxes: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        if self.training:
            sums, counts = segment_sums(embeddings.detach(), category_map, self.memory.memory.shape[0])
            self.memory.update(sums, counts)
        return ciae_loss(
            embeddings,
            segment_map,
            category_map,
            segment_boxes,
            self.memory.memory,
            self.num_stuff,
            stride=self.stride,
            margin=self.margin,
            top_k=self.top_k,
            alpha=self.alpha,
            thing_weight=self.thing_weight,
        )
