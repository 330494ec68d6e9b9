"""Synthetic Panoptic-DeepLab head outputs for tests and benchmarks (deterministic per seed)."""

from __future__ import annotations

import torch


def deeplab_scene(
    height: int,
    width: int,
    num_instances: int = 40,
    *,
    num_classes: int = 19,
    thing_ids: tuple[int, ...] = (11, 12, 13, 14, 15, 16, 17, 18),
    seed: int = 0,
    offset_noise: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head outputs of a plausible street scene.

    Stuff classes fill horizontal bands with wavy boundaries; ``num_instances`` discs of thing
    classes (radius 8-60 px, later ones occluding earlier ones) carry a Gaussian center peak
    (sigma 8, value 1) and offsets pointing at their center, plus Gaussian noise.

    Returns:
        (sem_seg Tensor[1, H, W] int64, center_heatmap Tensor[1, H, W] float32,
        offsets Tensor[2, H, W] float32)
    """
    g = torch.Generator().manual_seed(seed)
    stuff_ids = [c for c in range(num_classes) if c not in thing_ids]
    yy = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    xx = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    wave = 0.06 * height * torch.sin(xx / max(width, 1) * 6.28 * 3 + float(torch.rand((), generator=g)) * 6.28)
    band = ((yy + wave) / max(height, 1) * len(stuff_ids)).long().clamp(0, len(stuff_ids) - 1)
    sem = torch.tensor(stuff_ids)[band]
    heatmap = torch.zeros(height, width)
    offsets = torch.zeros(2, height, width)
    for _ in range(num_instances):
        cy = int(torch.randint(0, max(height, 1), (), generator=g))
        cx = int(torch.randint(0, max(width, 1), (), generator=g))
        radius = float(torch.randint(8, 61, (), generator=g))
        cls = thing_ids[int(torch.randint(0, len(thing_ids), (), generator=g))]
        dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
        disc = dist2 <= radius**2
        sem = torch.where(disc, torch.tensor(cls), sem)
        offsets[0] = torch.where(disc, cy - yy, offsets[0])
        offsets[1] = torch.where(disc, cx - xx, offsets[1])
        heatmap = torch.maximum(heatmap, torch.exp(-dist2 / (2 * 8.0**2)))
    offsets += offset_noise * torch.randn(offsets.shape, generator=g)
    return sem[None].long(), heatmap[None], offsets
