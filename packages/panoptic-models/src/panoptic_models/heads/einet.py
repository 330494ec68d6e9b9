"""EINet's blocks: the instance decoder, the embedding branches with their attention, the centroid
heatmap head, the embedding-segment mean (ESM) and the dictionary of semantic centers Q."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from panoptic_core.losses import segment_sums

from ..backbones.base import ShapeSpec
from ..layers import Conv2dNormAct, SeparableConv2d, c2_xavier_fill
from ..necks._features import select_features

__all__ = [
    "CenterHeatmapHead",
    "EINetInstanceDecoder",
    "EmbeddingBranch",
    "SemanticCenterDictionary",
    "embedding_segment_mean",
]


def _conv5(in_channels: int, out_channels: int, norm: str, separable: bool) -> nn.Module:
    if separable:
        return SeparableConv2d(in_channels, out_channels, 5, norm=norm)
    return Conv2dNormAct(in_channels, out_channels, 5, norm=norm)


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class EINetInstanceDecoder(nn.Module):
    """The instance decoder of EINet's encoder-decoder figure (``encoder-decoders.png``).

    With ``f4, f8, f16`` the backbone features at 1/4, 1/8 and 1/16, ``P`` =
    ``project_channels`` (256) and ``W`` = ``decoder_channels`` (128), every conv with norm and
    ReLU and every upsampling bilinear::

        a  = up(1x1(f16) -> P)                                   at 1/8
        b  = cat(up(5x5(a) -> W), up(5x5(a + 1x1(f8) -> P) -> W)) at 1/4, 2W channels
        out = cat(5x5(b) -> W, 5x5(b + 1x1(f4) -> 2W) -> W)       at 1/4, 2W channels

    Args:
        input_shape: ``{name: ShapeSpec}`` of the backbone.
        in_features: three features of distinct strides, any order (sorted by stride).
        project_channels, decoder_channels: P and W.
        norm: normalisation of every conv.
        depthwise_separable: 5x5 depthwise-separable convs.

    Shapes: features -> Tensor[B, 2W, H/s0, W/s0] at the finest feature's stride s0
    (:attr:`output_stride`).
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        in_features: Sequence[str] = ("res2", "res3", "res5"),
        *,
        project_channels: int = 256,
        decoder_channels: int = 128,
        norm: str = "BN",
        depthwise_separable: bool = True,
    ) -> None:
        super().__init__()
        select_features(input_shape, in_features, "EINetInstanceDecoder")
        ordered = sorted(in_features, key=lambda f: input_shape[f].stride)
        strides = [input_shape[f].stride for f in ordered]
        if len(ordered) != 3 or len(set(strides)) != 3:
            raise ValueError(
                f"in_features: EINet's instance decoder takes three features of distinct strides (1/4, 1/8, 1/16), "
                f"got {list(in_features)} with strides {strides}"
            )
        self.in_features = tuple(ordered)
        self.output_stride = strides[0]
        self.out_channels = 2 * decoder_channels
        c4, c8, c16 = (input_shape[f].channels for f in ordered)
        p, w = project_channels, decoder_channels
        self.project16 = Conv2dNormAct(c16, p, 1, norm=norm)
        self.project8 = Conv2dNormAct(c8, p, 1, norm=norm)
        self.project4 = Conv2dNormAct(c4, 2 * w, 1, norm=norm)
        self.fuse8 = _conv5(p, w, norm, depthwise_separable)
        self.fuse8_skip = _conv5(p, w, norm, depthwise_separable)
        self.fuse4 = _conv5(2 * w, w, norm, depthwise_separable)
        self.fuse4_skip = _conv5(2 * w, w, norm, depthwise_separable)
        c2_xavier_fill(self)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        f4, f8, f16 = (features[name] for name in self.in_features)
        a = _up(self.project16(f16), f8)
        b = torch.cat([_up(self.fuse8(a), f4), _up(self.fuse8_skip(a + self.project8(f8)), f4)], dim=1)
        return torch.cat([self.fuse4(b), self.fuse4_skip(b + self.project4(f4))], dim=1)


class EmbeddingBranch(nn.Module):
    """A decoder output -> its embedding (5x5 conv to D, no norm or activation) and, with
    ``attention``, its spatial attention (1x1 conv to 1 channel, sigmoid), both from the
    256-channel decoder output as the overview figure draws them.

    Shapes: Tensor[B, C, H, W] -> (Tensor[B, D, H, W], Tensor[B, 1, H, W] or None).
    """

    def __init__(self, in_channels: int, embedding_dim: int, attention: bool = True) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, embedding_dim, 5, padding=2)
        self.attention = nn.Conv2d(in_channels, 1, 1) if attention else None
        c2_xavier_fill(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        att = None if self.attention is None else torch.sigmoid(self.attention(x))
        return self.embed(x), att


class CenterHeatmapHead(nn.Module):
    """The multi-channel centroid heatmap from the instance embedding: 5x5 conv to ``channels``
    (32) with norm and ReLU, then a 1x1 conv to one logit per thing class whose bias starts at
    -log((1 - 0.1) / 0.1) = -2.19, CenterNet's heatmap prior.

    Shapes: Tensor[B, D, H, W] -> Tensor[B, C_thing, H, W] (logits).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 32, norm: str = "BN") -> None:
        super().__init__()
        self.tower = Conv2dNormAct(in_channels, channels, 5, norm=norm)
        self.predictor = nn.Conv2d(channels, num_classes, 1)
        c2_xavier_fill(self.tower)
        nn.init.normal_(self.predictor.weight, 0, 0.001)
        nn.init.constant_(self.predictor.bias, -math.log((1 - 0.1) / 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.tower(x))


def embedding_segment_mean(
    embeddings: torch.Tensor, labels: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ESM: the mean embedding over each label's pixels, in float32.

    ``ESM(X, M)_k = 1/|M_k| sum_{p in M_k} X_p`` (0 for a label without pixels).

    Args:
        embeddings (Tensor[B, D, H, W]); labels (Tensor[B, H, W] int64, -1 ignored): 0..count-1
            over the whole batch (offset them per image for per-image segments).

    Returns:
        (Tensor[count, D] means, Tensor[count] int64 pixel counts).
    """
    sums, counts = segment_sums(embeddings.float(), labels, count)
    return sums / counts.clamp(min=1).to(sums.dtype)[:, None], counts


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over processes; the gradient flows through this process's part."""
    if not (dist.is_available() and dist.is_initialized()):
        return x
    total = x.detach().clone()
    dist.all_reduce(total)
    return x + (total - x.detach())


class SemanticCenterDictionary(nn.Module):
    """The embedding dictionary of semantic centers Q (``interaction.png``), in fp32 buffers.

    ``centers`` (Tensor[C, D], unit rows) and ``updates`` (Tensor[C] int64, training steps that
    moved each entry; 0 = not initialised) are saved in the state_dict. Each training step
    :meth:`update` folds in, summed over the batch and over processes (torch.distributed):

    * the semantic average-embeddings ``V_bc`` (ESM of image b's class-c pixels, normalised):
      ``v_c = mean_b V_bc``;
    * the instance average-embeddings ``E_bk`` (normalised) weighted by
      ``w_bck = max(0, cos(V_bc, E_bk))`` for the instances k of class c in image b (the w of
      the figure, kept to the instance's own class): ``e_c = sum w_bck E_bk / sum w_bck``;

    then, for the classes present::

        Q_c <- v_c                                  if Q_c is not initialised
        Q_c <- norm((1 - m) Q_c + m v_c)            otherwise
        Q_c <- norm((1 - m) Q_c + m e_c)            if class c has instances with sum w > 0

    The returned Q_t carries the gradient of the batch's part (through V and E), so the
    re-calibration and R_ins train the attention maps; the buffers keep Q_t detached.

    Args:
        num_classes: C; dim: D; momentum: m.
    """

    def __init__(self, num_classes: int, dim: int, momentum: float = 0.1) -> None:
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"SemanticCenterDictionary: momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("centers", torch.zeros(num_classes, dim, dtype=torch.float32))
        self.register_buffer("updates", torch.zeros(num_classes, dtype=torch.int64))

    @property
    def valid(self) -> torch.Tensor:
        """Tensor[C] bool: the initialised entries."""
        return self.updates > 0

    def update(
        self,
        semantic_means: torch.Tensor,
        semantic_present: torch.Tensor,
        instance_means: torch.Tensor,
        instance_classes: torch.Tensor,
        instance_semantic: torch.Tensor,
    ) -> torch.Tensor:
        """One training step's update (see the class docstring).

        Args:
            semantic_means (Tensor[B, C, D]): V, the ESM of each image's class pixels.
            semantic_present (Tensor[B, C] bool): which (image, class) pairs have pixels.
            instance_means (Tensor[K, D]): E of the batch's instances.
            instance_classes (Tensor[K] int64): class of each instance.
            instance_semantic (Tensor[K] int64): row of each instance's (image, class) in the
                flattened ``semantic_means`` (b * C + c).

        Returns:
            Q_t (Tensor[C, D] float32) with the gradient of this batch's part.
        """
        num, dim = self.centers.shape
        v = F.normalize(semantic_means.float(), dim=-1) * semantic_present[..., None]
        sum_v = _all_reduce_sum(v.sum(0))
        n_v = _all_reduce_sum(semantic_present.sum(0).to(torch.float32))
        e = F.normalize(instance_means.float(), dim=-1)
        w = F.cosine_similarity(v.reshape(-1, dim)[instance_semantic], e, dim=-1).clamp(min=0)
        sum_e = _all_reduce_sum(torch.zeros(num, dim, device=e.device).index_add(0, instance_classes, w[:, None] * e))
        n_e = _all_reduce_sum(torch.zeros(num, device=e.device).index_add(0, instance_classes, w))
        mean_v = sum_v / n_v.clamp(min=1)[:, None]
        mean_e = sum_e / n_e.clamp(min=1e-12)[:, None]
        m = self.momentum
        old = self.centers
        moved = torch.where(
            self.valid[:, None], F.normalize((1 - m) * old + m * mean_v, dim=1), F.normalize(mean_v, dim=1)
        )
        q = torch.where((n_v > 0)[:, None], moved, old)
        q = torch.where((n_e > 0)[:, None], F.normalize((1 - m) * q + m * mean_e, dim=1), q)
        with torch.no_grad():
            self.centers.copy_(q.detach())
            self.updates += ((n_v > 0) | (n_e > 0)).long()
        return q

    def recalibrate(self, embeddings: torch.Tensor, centers: torch.Tensor, temperature: float) -> torch.Tensor:
        """The re-calibrated semantic embedding ``r_p = e_p + sum_c a_pc Q_c``,
        ``a_pc = softmax_c(cos(e_p, Q_c) / tau)`` over the initialised entries (r = e when none is).

        Args:
            embeddings (Tensor[B, D, H, W]); centers (Tensor[C, D]): Q (unit rows); temperature: tau.
        """
        valid = self.valid
        if not bool(valid.any()):
            return embeddings
        q = centers[valid].to(embeddings.dtype)
        logits = torch.einsum("bdhw,cd->bchw", F.normalize(embeddings, dim=1), q) / temperature
        context = torch.einsum("bchw,cd->bdhw", torch.softmax(logits, dim=1), q)
        return embeddings + context
