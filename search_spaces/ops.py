"""Candidate operations: ``OPS[name](c_in, c_out, stride, affine) -> nn.Module``.

Every op maps [B, c_in, H, W] to [B, c_out, ceil(H / stride), ceil(W / stride)] for any channel counts
and stride 1 or 2, so any op can sit on any edge or block.  ``affine=False`` is for BatchNorm inside
mixed ops, where (as in DARTS) learnable scales would let the weights undo the architecture weights.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from fsnas_core.options import OptionError

from .registry import OP_SETS, OPS

OpFactory = Callable[[int, int, int, bool], nn.Module]


def create_op(name: str, c_in: int, c_out: int, stride: int = 1, affine: bool = True) -> nn.Module:
    factory = OPS[name]  # KeyError naming the known ops
    if stride not in (1, 2):
        raise ValueError(f"op '{name}': stride must be 1 or 2, got {stride}")
    return factory(c_in, c_out, stride, affine)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) conv, pointwise conv, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dilation: int, affine: bool) -> None:
        pad = dilation * (kernel - 1) // 2
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, kernel, stride, pad, dilation=dilation, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    """Two separable convs in a row (the first strided), as in DARTS."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool) -> None:
        super().__init__(DilConv(c_in, c_in, kernel, stride, 1, affine), DilConv(c_in, c_out, kernel, 1, 1, affine))


class Conv1xKx1(nn.Sequential):
    """ReLU, 1xk conv, kx1 conv, BN: a cheap large receptive field (the few-shot set of MetaNAS)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, affine: bool) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, (1, k), (1, stride), (0, k // 2), bias=False),
                         nn.Conv2d(c_in, c_out, (k, 1), (stride, 1), (k // 2, 0), bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class Zero(nn.Module):
    """The 'none' op: no connection.  Its output keeps the shape so mixed sums stay well formed."""

    def __init__(self, c_out: int, stride: int) -> None:
        super().__init__()
        self.c_out, self.stride = c_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :1, :: self.stride, :: self.stride] if self.stride > 1 else x[:, :1]
        return x.mul(0.0).expand(-1, self.c_out, -1, -1)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two 1x1 convs, the second shifted by one pixel."""

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        a = self.conv_a(x)
        # pad on the far side so odd sizes give the same ceil(H / 2) as the unshifted branch
        b = self.conv_b(nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)))
        return self.bn(torch.cat([a, b], dim=1))


def _identity(c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if stride == 1:
        return ReLUConvBN(c_in, c_out, 1, 1, 0, affine)
    return FactorizedReduce(c_in, c_out, affine)


def _pool(kind: str) -> OpFactory:
    def make(c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
        pool = (nn.MaxPool2d(3, stride, 1) if kind == "max" else nn.AvgPool2d(3, stride, 1, count_include_pad=False))
        if c_in == c_out:  # BN after pooling (DARTS) keeps parameter-free ops on the scale of the others
            return nn.Sequential(pool, nn.BatchNorm2d(c_out, affine=False))
        return nn.Sequential(pool, ReLUConvBN(c_in, c_out, 1, 1, 0, affine))
    return make


OPS.register("none", lambda c_in, c_out, stride, affine: Zero(c_out, stride))
OPS.register("skip_connect", _identity)
OPS.register("max_pool_3x3", _pool("max"))
OPS.register("avg_pool_3x3", _pool("avg"))
OPS.register("sep_conv_3x3", lambda c_in, c_out, stride, affine: SepConv(c_in, c_out, 3, stride, affine))
OPS.register("sep_conv_5x5", lambda c_in, c_out, stride, affine: SepConv(c_in, c_out, 5, stride, affine))
OPS.register("dil_conv_3x3", lambda c_in, c_out, stride, affine: DilConv(c_in, c_out, 3, stride, 2, affine))
OPS.register("dil_conv_5x5", lambda c_in, c_out, stride, affine: DilConv(c_in, c_out, 5, stride, 2, affine))
OPS.register("conv_3x3", lambda c_in, c_out, stride, affine: ReLUConvBN(c_in, c_out, 3, stride, 1, affine))
OPS.register("conv_1x5_5x1", lambda c_in, c_out, stride, affine: Conv1xKx1(c_in, c_out, 5, stride, affine))

PARAMETER_FREE = frozenset({"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"})

# The op sets a space can name in its config (``space_options.ops``).
OP_SETS.register("darts", ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                           "dil_conv_3x3", "dil_conv_5x5"))
OP_SETS.register("fewshot", ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "conv_1x5_5x1", "conv_3x3",
                             "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"))


def op_choices(option: str, value: str | Sequence[str], *, sets: bool = True, refused: Sequence[str] = (),
               needs_other_than: str = "none") -> tuple[str, ...]:
    """The ops a space's ``option`` names: an ``OP_SETS`` name (when ``sets``) or a list of ``OPS`` names, none
    of them twice nor in ``refused``, at least one other than ``needs_other_than``; else ``OptionError``."""
    if isinstance(value, str):
        if sets and value in OP_SETS:
            return OP_SETS[value]
        hint = f"name an op set ({', '.join(OP_SETS)}) or give" if sets else "give"
        raise OptionError(option, f"'{value}' is not {'an op set' if sets else 'a list'}; {hint} a list of ops, "
                                  f"e.g. [{', '.join(list(OPS)[:2])}]")
    names = tuple(value)
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise OptionError(option, f"unknown op{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}; "
                          f"known ops: {', '.join(OPS)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise OptionError(option, f"lists {', '.join(twice)} twice; give each op once")
    bad = [n for n in names if n in refused]
    if bad:
        raise OptionError(option, f"'{bad[0]}' cannot be a choice here; drop it from the list")
    if not any(n != needs_other_than for n in names):
        raise OptionError(option, f"needs at least one op other than {needs_other_than}, got {list(names)}")
    return names
