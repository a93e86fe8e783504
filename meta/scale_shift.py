"""Scaling and shifting (SS) of every convolution of a frozen backbone, as meta-transfer learning (Sun et
al., CVPR 2019) defines it: the kernel of output channel c is multiplied by scale[c] (init 1) and shift[c]
(init 0) is added to its bias.  Applied by forward hooks, so any backbone works, searched cells included,
and nothing in the model is rewritten: conv(x, W * s) + b + t = s * (conv(x, W) + b - b) + b + t."""

from __future__ import annotations

import torch
from torch import nn


def _key(name: str) -> str:
    return name.replace(".", "__") or "root"


class ScaleShift(nn.Module):
    """Per-output-channel scale and shift for every ``nn.Conv2d`` in ``backbone``; ``attach`` installs the
    hooks, ``detach`` removes them.  The parameters live here, so they are in this module's state_dict."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.convs = {name: m for name, m in backbone.named_modules() if isinstance(m, nn.Conv2d)}
        if not self.convs:
            raise ValueError("the backbone has no Conv2d for scaling and shifting")
        self.scale = nn.ParameterDict({_key(n): nn.Parameter(torch.ones(m.out_channels, device=m.weight.device))
                                       for n, m in self.convs.items()})
        self.shift = nn.ParameterDict({_key(n): nn.Parameter(torch.zeros(m.out_channels, device=m.weight.device))
                                       for n, m in self.convs.items()})
        self._hooks: list = []

    def _hook(self, name: str):
        def apply(conv: nn.Conv2d, inputs, out: torch.Tensor) -> torch.Tensor:
            s, t = self.scale[_key(name)].view(1, -1, 1, 1), self.shift[_key(name)].view(1, -1, 1, 1)
            if conv.bias is None:
                return out * s + t
            b = conv.bias.view(1, -1, 1, 1)
            return (out - b) * s + b + t
        return apply

    def attach(self) -> "ScaleShift":
        if not self._hooks:
            self._hooks = [m.register_forward_hook(self._hook(n)) for n, m in self.convs.items()]
        return self

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
