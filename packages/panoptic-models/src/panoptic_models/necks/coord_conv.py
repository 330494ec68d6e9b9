"""CoordConv (Liu et al., 2018) as SOLOv2 and Panoptic FCN use it: two normalised coordinate channels.

SOLO / SOLOv2 build ``x = linspace(-1, 1, W)`` along the width and ``y = linspace(-1, 1, H)`` along
the height and concatenate ``[features, x, y]``; :func:`add_coords` does the same (``order="xy"``).
Panoptic FCN's ``SingleHead.coord_conv`` also appends two ``linspace(-1, 1)`` channels, but the first
one varies along the height and the second along the width (its ``meshgrid`` of a height range
and a width range), i.e. ``order="yx"`` here; use it when loading Panoptic FCN weights, as the
first conv's last two input channels are swapped otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CoordConv2d", "add_coords", "coord_grid"]

ORDERS = ("xy", "yx")


def coord_grid(batch: int, height: int, width: int, *, order: str = "xy", device=None, dtype=None) -> torch.Tensor:
    """The two coordinate channels :func:`add_coords` appends.

    Args:
        batch, height, width: output size.
        order: ``"xy"`` (SOLO: channel 0 varies along the width, channel 1 along the height) or
            ``"yx"`` (Panoptic FCN: the other way round).

    Returns:
        Tensor[batch, 2, height, width] with ``x[..., i, j] = linspace(-1, 1, width)[j]`` and
        ``y[..., i, j] = linspace(-1, 1, height)[i]`` (a size-1 axis gives -1, as ``linspace``).

    Raises:
        ValueError: unknown ``order``.
    """
    if order not in ORDERS:
        raise ValueError(f"order: unknown coordinate order {order!r}; expected one of {ORDERS}")
    xs = torch.linspace(-1, 1, width, device=device, dtype=dtype)
    ys = torch.linspace(-1, 1, height, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    pair = (grid_x, grid_y) if order == "xy" else (grid_y, grid_x)
    return torch.stack(pair).unsqueeze(0).expand(batch, -1, -1, -1)


def add_coords(x: torch.Tensor, order: str = "xy") -> torch.Tensor:
    """Concatenate normalised coordinates to a feature map (no gradient flows into them).

    Args:
        x: Tensor[B, C, H, W].
        order: see :func:`coord_grid` (``"xy"``: SOLOv2; ``"yx"``: Panoptic FCN's layout).

    Returns:
        Tensor[B, C + 2, H, W]: ``x`` then the x (width) and y (height) channels in [-1, 1], in
        ``x``'s dtype and device.

    Raises:
        ValueError: ``x`` is not 4-D, or unknown ``order``.
    """
    if x.dim() != 4:
        raise ValueError(f"x: expected a Tensor[B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    return torch.cat([x, coord_grid(b, h, w, order=order, device=x.device, dtype=x.dtype)], dim=1)


class CoordConv2d(nn.Conv2d):
    """A conv on ``add_coords(x)``: ``in_channels`` feature channels plus 2 coordinate channels.

    Args:
        in_channels: channels of the input feature map (the weight has ``in_channels + 2``).
        out_channels, kernel_size, stride, dilation, bias: as ``nn.Conv2d``.
        padding: as ``nn.Conv2d``; ``None`` (default) gives 'same' padding for odd kernels,
            ``dilation * (kernel_size - 1) // 2``.
        order: coordinate order, see :func:`coord_grid`.

    Shapes: Tensor[B, in_channels, H, W] -> Tensor[B, out_channels, H', W'] (``H' = H`` for a
    stride-1 odd kernel with the default padding).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = True,
        order: str = "xy",
    ) -> None:
        if order not in ORDERS:
            raise ValueError(f"order: unknown coordinate order {order!r}; expected one of {ORDERS}")
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        super().__init__(in_channels + 2, out_channels, kernel_size, stride, padding, dilation, bias=bias)
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor[B, in_channels, H, W]). Returns: Tensor[B, out_channels, H', W']."""
        return super().forward(add_coords(x, self.order))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, order={self.order!r} (in_channels includes 2 coordinate channels)"
