"""Conv-4 (Vinyals et al. 2016; Snell et al. 2017): four 3x3 conv-BN-ReLU-maxpool blocks."""

from __future__ import annotations

import torch
from torch import nn

from fsnas_core.options import at_least, declares_checks

from ..registry import MODELS


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.MaxPool2d(2))


class Conv4(nn.Module):
    """Feature extractor: [B, C, H, W] -> [B, hidden * (H/16) * (W/16)] (64-d for 28x28 Omniglot)."""

    def __init__(self, in_channels: int = 1, hidden: int = 64, layers: int = 4) -> None:
        super().__init__()
        widths = [in_channels] + [hidden] * layers
        self.features = nn.Sequential(*(conv_block(a, b) for a, b in zip(widths, widths[1:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


def check_conv4(options: dict) -> None:
    at_least(options, 1, "hidden", "layers")


@MODELS.register("conv4")
@declares_checks(check_conv4)
def conv4(in_channels: int = 1, hidden: int = 64, layers: int = 4) -> Conv4:
    check_conv4({"hidden": hidden, "layers": layers})
    return Conv4(in_channels, hidden, layers)
