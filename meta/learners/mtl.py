"""Meta-transfer learning, phase 2 (Sun et al., CVPR 2019): the pretrained backbone is frozen; the scaling
and shifting of its convolutions (``meta.scale_shift``) and the few-shot classifier's initialisation are
meta-learned, while the inner loop adapts the classifier on the support set (features computed once, as
in ANIL).  Phase 1 (many-way pretraining on the meta-training classes) produces the backbone it starts
from; the hard-task meta-batch is ``train.hard_tasks`` (``meta.hard_tasks``)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..scale_shift import FoldError, ScaleShift, fold_scale_shift
from .maml import MAML
from .registry import LEARNERS


@LEARNERS.register("mtl")
class MTL(MAML):
    def __init__(self, model: nn.Module, *, n_way: int, inner_lr: float = 0.01, steps: int = 20,
                 test_steps: int | None = None, lr: float = 1e-3, **options) -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        self.ss = ScaleShift(model).attach()
        options.pop("anil", None)
        super().__init__(model, n_way=n_way, inner_lr=inner_lr, steps=steps, test_steps=test_steps, lr=lr,
                         anil=True, **options)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Scale/shift, the classifier initialisation and any inner rates; never the frozen backbone."""
        return [*self.ss.parameters(), *(p for n, p in self.meta.named_parameters() if not n.startswith("backbone."))]

    def to(self, device) -> "MTL":
        self.ss.to(device)
        return super().to(device)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ss": self.ss.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ss.load_state_dict(state["ss"])

    def trained_state(self) -> dict:
        return {**super().trained_state(), "ss": self.ss.state_dict()}

    def load_trained_state(self, state: dict) -> None:
        super().load_trained_state(state)
        if "ss" in state:
            self.ss.load_state_dict(state["ss"])

    @classmethod
    def fold_into_backbone(cls, backbone: nn.Module, trained_state: dict, in_shape: Sequence[int]) -> str | None:
        """The learned scale/shift written into the kernels and biases (``meta.scale_shift.fold_scale_shift``),
        so the plain backbone computes what the hooked one did."""
        if "ss" not in trained_state:
            return None
        ss = ScaleShift(backbone)
        try:
            ss.load_state_dict(trained_state["ss"])
            fold_scale_shift(backbone, ss, torch.zeros(2, *in_shape))
        except (FoldError, RuntimeError) as exc:
            raise FoldError(f"scale/shift cannot be folded into the plain backbone ({exc})") from None
        return "the meta-learned scale/shift (MTL) folded into the weights"
