"""How architecture parameters become op weights in mixed mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F

WEIGHTINGS = ("softmax", "sigmoid", "gumbel")


def op_weights(alpha: torch.Tensor, weighting: str, tau: float = 1.0) -> torch.Tensor:
    """softmax (DARTS), independent sigmoids (Fair-DARTS) or a hard Gumbel-softmax sample (GDAS: one-hot
    forward, soft gradient), over the last dimension."""
    if weighting == "softmax":
        return F.softmax(alpha, dim=-1)
    if weighting == "sigmoid":
        return torch.sigmoid(alpha)
    return F.gumbel_softmax(alpha, tau=tau, hard=True, dim=-1)
