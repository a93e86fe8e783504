"""MBConv (MobileNetV2 inverted residual, optional squeeze-excite) ops for the block space.

Registered as ``mbconv_k{3,5,7}_e{1,3,6}`` and ``..._se``: expand 1x1 (skipped at expansion 1), depthwise
kxk (strided), optional squeeze-excite, project 1x1; a residual when shape allows.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import OPS


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int, expansion: int, se: bool,
                 affine: bool = True) -> None:
        super().__init__()
        mid = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, mid, 1, bias=False), nn.BatchNorm2d(mid, affine=affine), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
                   nn.BatchNorm2d(mid, affine=affine), nn.ReLU6(inplace=True)]
        if se:
            layers.append(SqueezeExcite(mid))
        layers += [nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out, affine=affine)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def _mbconv(kernel: int, expansion: int, se: bool):
    return lambda c_in, c_out, stride, affine: MBConv(c_in, c_out, stride, kernel, expansion, se, affine)


for _se in (False, True):
    for _k in (3, 5, 7):
        for _e in (1, 3, 6):
            OPS.register(f"mbconv_k{_k}_e{_e}{'_se' if _se else ''}", _mbconv(_k, _e, _se))
