"""What every learner offers the training loop and the evaluation protocol.

A learner wraps any ``nn.Module`` backbone (it never builds one) together with its own optimiser, so
``state_dict()`` holds everything a checkpoint needs to resume.  What a caller may rely on without knowing
the learner by name is declared on its class: ``needs``, ``fixed_ways``, ``inner_loop``, ``takes_loss``,
``meta_trains``, and ``fold_into_backbone`` for exporting a plain backbone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn

from ..episodes import Episode
from ..evaluation import accuracy
from ..hard_tasks import hardest_class
from ..losses import EpisodicLoss
from ..optim_state import load_optimizer_state
from ..parallel import Ranks
from ..precision import autocast, upcast


GIVEN = ("n_way", "in_shape")  # what a caller can fill in from the task (its ways) and the data (its image shape)


class Learner(ABC):
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    bn_mode: str = "eval"  # BatchNorm at test time: see meta.batchnorm
    loss: EpisodicLoss | None = None  # the episodic loss of a learner that ``takes_loss``
    meta_trains: ClassVar[bool] = True  # False: a baseline that only predicts (its runs set train.steps: 0)
    # constructor arguments the caller fills from the task and the data, a subset of GIVEN
    needs: ClassVar[tuple[str, ...]] = ()
    fixed_ways: ClassVar[bool] = False  # its classifier head is bound to the meta-training ways: it tests only those
    inner_loop: ClassVar[bool] = False  # adapts at test time with ``test_steps`` inner steps (a settable attribute)
    takes_loss: ClassVar[bool] = False  # takes an episodic ``loss`` option (and its ``loss_options``)
    # its meta-training forward may run in bfloat16 (``amp``: train.amp); losses and distances stay float32
    mixed_precision: ClassVar[bool] = False
    amp: bool = False
    ranks: Ranks = Ranks()  # data-parallel ranks sharing each step's episodes (meta.parallel); one by default

    @abstractmethod
    def meta_train_step(self, episodes: Sequence[Episode]) -> dict[str, float]:
        """One outer update from a meta-batch of episodes; returns scalar metrics (loss, accuracy, ...)."""

    @abstractmethod
    def predict(self, episode: Episode) -> torch.Tensor:
        """Query logits [n_query_total, n_way] after using the episode's support set."""

    def outer_step(self, episodes: Sequence[Episode], query_logits: Callable[[Episode], torch.Tensor],
                   loss: EpisodicLoss,
                   all_query_logits: Callable[[Sequence[Episode]], torch.Tensor] | None = None) -> dict[str, float]:
        """One optimiser step on the query loss averaged over the meta-batch: one backward per episode (only
        one episode's graph alive at a time), or with ``all_query_logits`` (stacked logits of every task,
        e.g. from vmap) one backward for all.  ``loss`` is built per episode (``EpisodicLoss``).  Reports each
        task's worst class in ``hard_classes`` for the hard-task meta-batch."""
        self.optimizer.zero_grad(set_to_none=True)
        losses, accs, hard = [], [], []
        if all_query_logits is not None:
            with self.autocast():
                stacked = upcast(all_query_logits(episodes))
            task_losses = [loss.for_episode(ep)(logits, ep.query_y) for logits, ep in zip(stacked, episodes)]
            (sum(task_losses) / len(episodes)).backward()
            outputs = [(loss.item(), logits.detach(), ep) for loss, logits, ep in zip(task_losses, stacked, episodes)]
        else:
            outputs = []
            for ep in episodes:
                with self.autocast():
                    logits = upcast(query_logits(ep))
                value = loss.for_episode(ep)(logits, ep.query_y)
                (value / len(episodes)).backward()
                outputs.append((value.item(), logits.detach(), ep))
        for value, logits, ep in outputs:
            losses.append(value)
            accs.append(accuracy(logits, ep.query_y))
            hard.append(hardest_class(logits, ep))
        # the mean over every rank's episodes: N ranks of B episodes step as one process with N*B
        self.ranks.average_gradients(p for group in self.optimizer.param_groups for p in group["params"])
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        loss_mean, acc_mean = self.ranks.average([sum(losses) / len(losses), sum(accs) / len(accs)])
        return {"loss": loss_mean, "accuracy": acc_mean, "lr": self.optimizer.param_groups[0]["lr"],
                "hard_classes": hard}

    def sync_buffers(self) -> None:
        """BatchNorm running statistics averaged over the ranks (after each step of a data-parallel run)."""
        self.ranks.average_buffers(self.model)

    def autocast(self):
        """The meta-training forward's precision region: bfloat16 autocast when ``amp`` is set."""
        return autocast(next(self.model.parameters()).device, self.amp)

    def set_progress(self, step: int, total: int) -> None:
        """Tell the learner's loss how far meta-training is (loss schedules such as LDAM's DRW)."""
        if self.loss is not None:
            self.loss.step(step, total)

    def to(self, device: torch.device | str) -> "Learner":
        self.model.to(device)
        return self

    def state_dict(self) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def trained_state(self) -> dict:
        """What prediction needs besides the backbone's weights (a MAML head, inner rates); {} if nothing."""
        return {}

    def load_trained_state(self, state: dict) -> None:
        """Restore what ``trained_state`` returned."""

    @classmethod
    def fold_into_backbone(cls, backbone: nn.Module, trained_state: dict, in_shape: Sequence[int]) -> str | None:
        """Write what this learner learned besides the backbone (``trained_state``, as ``trained_state()``
        returned it) into ``backbone``'s own weights, in place, so that the plain backbone computes what the
        learner's model did; ``in_shape``: the [C, H, W] of its input.  Returns a short description of what was
        folded, or None when there is nothing to fold (the default: a head or inner rates are not part of a
        backbone).  What cannot be folded exactly raises ``meta.scale_shift.FoldError`` saying
        '<what> cannot be folded into the plain backbone (<why>)', and the backbone is left unchanged."""
        return None

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, self.scheduler, state["optimizer"], state.get("scheduler"))
