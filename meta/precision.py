"""Mixed precision for meta-training: the backbone's forward in bfloat16 under autocast, while what needs
float32 stays there: losses (logits are cast up before them), ProtoNet's squared distances (cancellation
between large feature norms loses the few bits bfloat16 keeps), BatchNorm's running statistics and every
parameter and optimiser state (autocast never changes a parameter's dtype)."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device | str, enabled: bool):
    """bfloat16 autocast on ``device`` (CUDA or CPU) when ``enabled``; otherwise nothing changes."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def full_precision(device: torch.device | str):
    """A region computed in float32 even inside an autocast region."""
    return torch.autocast(torch.device(device).type, enabled=False)


def upcast(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is in a half type (bfloat16, float16); float32 and float64 stay as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t
