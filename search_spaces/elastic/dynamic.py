"""Layers whose weights are shared by slicing (once-for-all / BigNAS): a path of width c and kernel k uses the
first c output channels and first c_in input channels of the widest conv, and the centre k x k of its largest
kernel, optionally passed through OFA's kernel transformation (a learned k^2 x k^2 map per smaller kernel,
shared by every channel, from the next larger kernel's centre)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def centre(weight: torch.Tensor, k: int) -> torch.Tensor:
    big = weight.shape[-1]
    lo = (big - k) // 2
    return weight[..., lo: lo + k, lo: lo + k]


class DynamicConv2d(nn.Module):
    def __init__(self, max_in: int, max_out: int, kernels: Sequence[int], bias: bool = False,
                 transform: bool = False) -> None:
        super().__init__()
        self.kernels = tuple(sorted(set(int(k) for k in kernels)))
        big = self.kernels[-1]
        self.weight = nn.Parameter(torch.empty(max_out, max_in, big, big))
        self.bias = nn.Parameter(torch.empty(max_out)) if bias else None
        # nn.Conv2d's initialisation, at the largest shape
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(max_in * big * big)
            nn.init.uniform_(self.bias, -bound, bound)
        self.transform = transform
        if transform:
            for k in self.kernels[:-1]:
                self.register_parameter(f"transform_{k}", nn.Parameter(torch.eye(k * k)))

    def kernel(self, c_out: int, c_in: int, k: int) -> torch.Tensor:
        """The [c_out, c_in, k, k] weight of a path."""
        if k not in self.kernels:
            raise ValueError(f"kernel {k} is not a choice of this layer ({self.kernels})")
        w = self.weight[:c_out, :c_in]
        if not self.transform:
            return centre(w, k)
        for size in reversed(self.kernels[:-1]):  # largest to smallest, down to k
            if size < k:
                break
            w = centre(w, size)
            w = (w.reshape(-1, size * size) @ getattr(self, f"transform_{size}")).reshape(c_out, c_in, size, size)
        return w

    def forward(self, x: torch.Tensor, c_out: int, k: int, stride: int = 1) -> torch.Tensor:
        bias = self.bias[:c_out] if self.bias is not None else None
        return F.conv2d(x, self.kernel(c_out, x.shape[1], k), bias, stride, k // 2)

    def export_to(self, conv: nn.Conv2d) -> None:
        """Copy the slice a stand-alone ``conv`` of this layer's path uses into it."""
        with torch.no_grad():
            conv.weight.copy_(self.kernel(conv.out_channels, conv.in_channels, conv.kernel_size[0]))
            if conv.bias is not None:
                conv.bias.copy_(self.bias[: conv.out_channels])


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first c channels of its statistics and affine parameters (c: the input's); the
    running statistics of those channels are updated in place.  A BatchNorm, so BN recalibration finds it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative average, as nn.BatchNorm2d
                momentum = 1.0 / float(self.num_batches_tracked)
        weight = self.weight[:c] if self.affine else None
        bias = self.bias[:c] if self.affine else None
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], weight, bias, self.training,
                            momentum or 0.0, self.eps)

    def export_to(self, bn: nn.BatchNorm2d) -> None:
        c = bn.num_features
        with torch.no_grad():
            bn.running_mean.copy_(self.running_mean[:c])
            bn.running_var.copy_(self.running_var[:c])
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
            if bn.affine:
                bn.weight.copy_(self.weight[:c])
                bn.bias.copy_(self.bias[:c])
