"""The stand-alone network of an elastic genotype: plain PyTorch modules, laid out so that the genotypes of
Conv-4 and ResNet-12 build those exact backbones (the same parameters in the same order)."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import NETWORKS
from .genotype import ElasticGenotype, ElasticStage


def activation(block: str) -> nn.Module:
    return nn.ReLU(inplace=True) if block == "plain" else nn.LeakyReLU(0.1)


def pool_ceil(block: str) -> bool:
    """Max-pooling rounds down after plain stages (Conv-4) and up after residual ones (ResNet-12)."""
    return block == "residual"


class PlainBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, affine: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2)  # biased, as Conv-4's
        self.bn = nn.BatchNorm2d(c_out, affine=affine)
        self.act = activation("plain")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    """``convs`` conv-BN pairs with LeakyReLU between them, plus the shortcut, then LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, convs: int, project: bool,
                 affine: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, kernel // 2,
                                 bias=False), nn.BatchNorm2d(c_out, affine=affine)]
            if i < convs - 1:
                layers.append(activation("residual"))
        self.body = nn.Sequential(*layers)
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                       nn.BatchNorm2d(c_out, affine=affine)) if project else nn.Identity())
        self.act = activation("residual")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def make_block(stage: ElasticStage, j: int, c_in: int, affine: bool = True) -> nn.Module:
    """Block ``j`` of ``stage``: the first takes ``c_in`` channels, carries the stride and (residual) projects."""
    stride = 2 if j == 0 and stage.down == "stride" else 1
    if stage.block == "plain":
        return PlainBlock(c_in, stage.width, stage.kernel, stride, affine)
    return ResidualBlock(c_in, stage.width, stage.kernel, stride, stage.convs, project=j == 0, affine=affine)


class ElasticStageModule(nn.Module):
    def __init__(self, stage: ElasticStage, c_in: int, affine: bool = True) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(make_block(stage, j, c_in if j == 0 else stage.width, affine)
                                      for j in range(stage.depth)))
        self.pool = nn.MaxPool2d(2, ceil_mode=pool_ceil(stage.block)) if stage.down == "maxpool" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(x))


def head_of(name: str) -> nn.Module:
    return nn.Flatten(1) if name == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


@NETWORKS.register("elastic")
class ElasticNetwork(nn.Module):
    """[B, C, H, W] -> [B, features] (flatten: width x H' x W' of the last stage; avgpool: its width)."""

    def __init__(self, genotype: ElasticGenotype, in_channels: int = 3, affine: bool = True) -> None:
        super().__init__()
        self.genotype = genotype
        widths = [in_channels] + [s.width for s in genotype.stages]
        self.stages = nn.Sequential(*(ElasticStageModule(s, c_in, affine) for s, c_in in zip(genotype.stages, widths)))
        self.head = head_of(genotype.head)
        if genotype.head == "avgpool":  # a flattened map's size depends on the input's: learners measure it
            self.out_channels = genotype.stages[-1].width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(x))
