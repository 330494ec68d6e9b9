"""EINet losses (embedding-interaction panoptic segmentation): the centroid heatmap's focal loss,
the instance-to-dictionary triplet ``R_ins``, the centroid regularisation ``L_cen`` and the
pixel-to-centroid grouping loss. No paper text is public: each docstring says which reading of
the figures the formula is (see the "EINet as implemented" section of panoptic-models' README)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "centernet_focal_loss",
    "centroid_alignment_loss",
    "centroid_contrast_loss",
    "dictionary_triplet_loss",
]


def _cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Tensor[N, M] float32: cos(a_i, b_j), also under autocast, which would run the matmul in half."""
    with torch.autocast(a.device.type, enabled=False):
        return F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T


def centernet_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss ("Objects as Points", eq. 1), ``L_hm``.

    With ``p = clamp(sigmoid(logits), 1e-4, 1 - 1e-4)`` (CenterNet's ``_sigmoid``) and ``Y`` the
    Gaussian target::

        L = -1/N sum_xyc { (1 - p)^alpha log(p)                 if Y = 1
                         { (1 - Y)^beta p^alpha log(1 - p)      otherwise

    summed over the whole batch, N the number of ``Y == 1`` pixels (the negative sum alone
    when N = 0), as CenterNet's ``_neg_loss``.

    Args:
        logits (Tensor[B, C, H, W]): heatmap logits; target (Tensor[B, C, H, W]) in [0, 1].
    """
    if logits.shape != target.shape:
        raise ValueError(f"centernet_focal_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    t = target.to(p.dtype)
    pos = t.eq(1)
    pos_loss = torch.where(pos, torch.log(p) * (1 - p) ** alpha, 0.0).sum()
    neg_loss = torch.where(pos, 0.0, torch.log(1 - p) * p**alpha * (1 - t) ** beta).sum()
    num_pos = pos.sum()
    if num_pos == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / num_pos


def dictionary_triplet_loss(
    anchors: torch.Tensor,
    classes: torch.Tensor,
    centers: torch.Tensor,
    valid: torch.Tensor | None = None,
    margin: float = 0.3,
) -> torch.Tensor:
    """``R_ins``: triplet loss of the instance average-embeddings against the semantic center dictionary.

    Anchor: instance k's average embedding ``E_k``; positive: the dictionary entry ``Q_{c_k}`` of
    its class; negatives: every other valid entry ``Q_j`` (``interaction.png`` draws all other
    categories, things and stuff). With the cosine distance ``d(a, b) = 1 - cos(a, b)``::

        R_ins = 1/K sum_k 1/|N_k| sum_{j in N_k} max(0, d(E_k, Q_{c_k}) - d(E_k, Q_j) + margin)

    over the K anchors whose own entry is valid, ``N_k`` the valid entries j != c_k; 0 when there
    is no such anchor or no negative.

    Args:
        anchors (Tensor[K, D]): instance average embeddings (any norm).
        classes (Tensor[K] int64): class of each anchor (row of ``centers``).
        centers (Tensor[C, D]): the dictionary Q (any norm).
        valid (Tensor[C] bool): entries that exist (initialised); all if None.
        margin: the triplet margin.
    """
    if anchors.dim() != 2 or centers.dim() != 2 or anchors.shape[1] != centers.shape[1]:
        raise ValueError(
            f"dictionary_triplet_loss: anchors {tuple(anchors.shape)} and centers {tuple(centers.shape)} must be "
            "[K, D] and [C, D]"
        )
    num = centers.shape[0]
    valid = torch.ones(num, dtype=torch.bool, device=centers.device) if valid is None else valid.bool()
    sim = _cosine_matrix(anchors, centers)  # [K, C]
    d = 1 - sim
    d_pos = d.gather(1, classes.view(-1, 1))
    negative = valid[None, :] & (torch.arange(num, device=d.device)[None, :] != classes.view(-1, 1))
    hinge = F.relu(d_pos - d + margin) * negative
    per_anchor = hinge.sum(1) / negative.sum(1).clamp(min=1)
    use = valid[classes] & negative.any(1)
    if not use.any():
        return (anchors.sum() + centers.sum()) * 0.0
    return per_anchor[use].mean()


def centroid_alignment_loss(centroids: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``L_cen``: centroid regularisation between each instance's centroid embedding and its average embedding.

    ``O_k`` is the instance embedding at the instance's centroid pixel, ``E_k`` the ESM average
    over its mask::

        L_cen = 1/K sum_k (1 - cos(O_k, E_k))        (0 when K = 0)

    Args:
        centroids (Tensor[K, D]): O; means (Tensor[K, D]): E.
    """
    if centroids.shape != means.shape:
        raise ValueError(f"centroid_alignment_loss: {tuple(centroids.shape)} and {tuple(means.shape)} differ")
    if centroids.shape[0] == 0:
        return (centroids.sum() + means.sum()) * 0.0
    return (1 - F.cosine_similarity(centroids.float(), means.float(), dim=1)).mean()


def centroid_contrast_loss(
    embeddings: torch.Tensor,
    instance: torch.Tensor,
    centroids: torch.Tensor,
    groups: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Grouping loss (ours): each instance pixel picks its own centroid embedding among those of its group.

    Inference gives a thing pixel to the most similar centroid embedding of its class; this
    trains exactly that rule. For pixel i of instance k = ``instance[i]`` with group
    g = ``groups[k]`` (the class; one image at a time)::

        l_i = -log( exp(cos(e_i, O_k) / tau) / sum_{j: groups[j] = g} exp(cos(e_i, O_j) / tau) )

    and the loss of instance k is the mean of ``l_i`` over its pixels (0 without pixels, and 0
    when it is alone in its group).

    Args:
        embeddings (Tensor[N, D]): the pixel embeddings (any norm).
        instance (Tensor[N] int64): instance of each pixel (0..K-1).
        centroids (Tensor[K, D]): O, the centroid embeddings.
        groups (Tensor[K] int64): group (class) of each instance.
        temperature: tau.

    Returns:
        Tensor[K]: the loss of each instance.
    """
    if temperature <= 0:
        raise ValueError(f"centroid_contrast_loss: temperature must be positive, got {temperature}")
    k = centroids.shape[0]
    if k == 0:
        return centroids.new_zeros(0)
    sim = _cosine_matrix(embeddings, centroids) / temperature  # [N, K]
    same = groups[instance][:, None] == groups[None, :]
    logp = torch.log_softmax(sim.masked_fill(~same, float("-inf")), dim=1)
    pixel = -logp.gather(1, instance.view(-1, 1))[:, 0]
    sums = torch.zeros(k, dtype=pixel.dtype, device=pixel.device).index_add(0, instance, pixel)
    counts = torch.bincount(instance, minlength=k)[:k].to(pixel.dtype)
    return sums / counts.clamp(min=1)
