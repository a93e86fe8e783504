"""BatchNorm modes for episodic evaluation.

``eval``: running statistics from meta-training.  ``transductive``: statistics of the episode's own
batch (support and query together), as the original MAML evaluates; the running buffers are restored
afterwards so evaluation never changes the model.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

BN_MODES = ("eval", "transductive")


def check_bn_mode(mode: str) -> str:
    if mode not in BN_MODES:
        raise ValueError(f"bn_mode must be 'eval' (running statistics) or 'transductive' (episode "
                         f"statistics), got '{mode}'")
    return mode


@contextmanager
def use_bn_mode(model: nn.Module, mode: str) -> Iterator[nn.Module]:
    check_bn_mode(mode)
    was_training = model.training
    saved = {name: buf.clone() for name, buf in model.named_buffers()}
    model.train(mode == "transductive")
    try:
        yield model
    finally:
        if mode == "transductive":
            for name, buf in model.named_buffers():
                buf.copy_(saved[name])
        model.train(was_training)
