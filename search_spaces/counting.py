"""Parameter and multiply-accumulate counts of a genotype's network at an input size.

MACs are counted by forward hooks on convolutions and linear layers (the ops that dominate; BN, pooling
and activations are not counted), for one image.
"""

from __future__ import annotations

import torch
from torch import nn

from .build import build_network


def count_module(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[int, int]:
    macs = 0

    def conv_hook(m: nn.Conv2d, inputs, out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inputs, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out[0].numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return params, macs


def count(genotype, input_size: tuple[int, int, int]) -> tuple[int, int]:
    return count_module(build_network(genotype, in_channels=input_size[0]), input_size)
