"""Shared layers: the GroupNorm that also takes groups of a single value."""

import torch
from torch import nn

from panoptic_models.layers import GroupNorm, get_norm


def test_group_norm_equals_torch_where_torch_accepts_the_input():
    torch.manual_seed(0)
    ours, theirs = GroupNorm(8, 32), nn.GroupNorm(8, 32)
    nn.init.normal_(theirs.weight), nn.init.normal_(theirs.bias)
    ours.load_state_dict(theirs.state_dict())
    for shape in [(2, 32, 5, 7), (1, 32, 1, 1), (1, 32, 3)]:
        x = torch.randn(shape)
        assert torch.equal(ours(x), theirs(x))
    # One value per group, but two images: torch accepts it, so it is torch's computation.
    ours, theirs = GroupNorm(32, 32), nn.GroupNorm(32, 32)
    nn.init.normal_(theirs.weight), nn.init.normal_(theirs.bias)
    ours.load_state_dict(theirs.state_dict())
    for shape in [(2, 32, 1, 1), (1, 32, 1, 2)]:
        x = torch.randn(shape)
        assert torch.equal(ours(x), theirs(x))


def test_group_norm_of_single_value_groups_is_the_formula():
    """(x - mean) / sqrt(var + eps) is 0 for a group of one value: the output is the bias, and no
    gradient reaches x (torch raises on this input)."""
    norm = get_norm("GN", 32)
    assert isinstance(norm, GroupNorm) and norm.num_groups == 32
    nn.init.normal_(norm.weight), nn.init.normal_(norm.bias)
    x = torch.randn(1, 32, 1, 1, requires_grad=True)
    out = norm(x)
    assert torch.equal(out, norm.bias.detach().view(1, -1, 1, 1).expand_as(out))
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(norm.bias.grad, torch.ones(32))
    assert torch.equal(norm.weight.grad, torch.zeros(32))  # a gradient, not None (DDP expects one)
    # The same as the formula computed with a reduction over the group's one value.
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    formula = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    assert torch.allclose(out, formula)
    assert torch.equal(GroupNorm(32, 32, affine=False)(x), torch.zeros_like(x))
