"""ResNet-12 (Oreshkin et al. 2018; Lee et al. 2019): four residual stages of three 3x3 convs, each
followed by 2x2 max-pooling; features are globally average-pooled."""

from __future__ import annotations

import torch
from torch import nn

from fsnas_core.options import OptionError, declares_checks

from ..registry import MODELS


class ResidualStage(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        layers = []
        for i in range(3):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2, ceil_mode=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class ResNet12(nn.Module):
    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (64, 160, 320, 640)) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.stages = nn.Sequential(*(ResidualStage(a, b) for a, b in zip(chans, chans[1:])))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(x)).flatten(1)


def check_resnet12(options: dict) -> None:
    widths = list(options["widths"])
    if not widths or min(widths) < 1:
        raise OptionError("widths", f"give the output channels of each residual stage, each at least 1, e.g. "
                                    f"[64, 160, 320, 640]; got {widths}")


@MODELS.register("resnet12")
@declares_checks(check_resnet12)
def resnet12(in_channels: int = 3, widths: list[int] | tuple[int, ...] = (64, 160, 320, 640)) -> ResNet12:
    check_resnet12({"widths": widths})
    return ResNet12(in_channels, tuple(widths))
