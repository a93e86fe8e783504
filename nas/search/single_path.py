"""The single-path strategies: paths drawn per episode of each step, the architecture chosen afterwards by
evolution (``nas.search.evolution``).  Registered in ``STRATEGIES`` when ``nas.search.strategies`` is imported.

Each episode of a step's meta-batch gets its own draw (one path for spos, one sandwich for the others), in
episode order from the strategy's generator; the step's loss is the mean over its episodes.  On several ranks
every rank draws the whole step's paths and trains its share (``SearchStrategy.draw``), and the weight
gradients are averaged over the ranks, a weight no rank's path used keeping none, so N ranks of B episodes
train as one process of N·B.

- ``spos``: uniform single-path training (Guo et al. 2020).
- ``sandwich``: the largest, the smallest and a few drawn paths per step, the others distilled from the
  largest (BigNAS).
- ``progressive``: the sandwich rule with the space's dimensions opened phase by phase (OFA's progressive
  shrinking).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fsnas_core.options import OptionError, at_least
from meta.optim_state import load_optimizer_state

from .objective import episode_logits, episode_loss
from .strategies import STRATEGIES, SearchStrategy, check_weight_options, mean, sgd_schedule, step_episodes


@STRATEGIES.register("spos")
class SposStrategy(SearchStrategy):
    """Uniform single path: each episode of a step trains one randomly drawn path (Guo et al. 2020)."""

    chooses_by_evolution = True
    takes_seed = True
    data_parallel = True
    space_needs = ("sample_path",)

    def __init__(self, supernet: nn.Module, *, steps: int, w_lr: float = 0.05, w_momentum: float = 0.9,
                 w_weight_decay: float = 4e-5, grad_clip: float = 5.0, seed: int = 0) -> None:
        SposStrategy.check_options(dict(locals()))
        self.net, self.grad_clip = supernet, grad_clip
        self.w_opt, self.w_sched = sgd_schedule(supernet.weight_parameters(), w_lr, w_momentum, w_weight_decay, steps)
        self.gen = torch.Generator().manual_seed(seed)

    @classmethod
    def check_options(cls, options: dict) -> None:
        check_weight_options(options)

    def step(self, train_eps, val_eps=None) -> dict[str, float]:
        train_eps = step_episodes(train_eps)
        self.net.train()
        paths = self.draw(len(train_eps), lambda: self.net.sample_path(self.gen))
        self.w_opt.zero_grad(set_to_none=True)
        losses, accs = [], []
        for path, ep in zip(paths, train_eps):
            loss, acc = episode_loss(lambda x, p=path: self.net(x, path=p), ep)
            (loss / len(train_eps)).backward()
            losses.append(loss.item())
            accs.append(acc)
        self.step_weights()
        loss, acc = self.ranks.average([mean(losses), mean(accs)])
        return {"loss": loss, "accuracy": acc, "lr": self.w_opt.param_groups[0]["lr"]}

    def state_dict(self) -> dict:
        return {"w_opt": self.w_opt.state_dict(), "w_sched": self.w_sched.state_dict(),
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        load_optimizer_state(self.w_opt, self.w_sched, state["w_opt"], state["w_sched"])
        self.gen.set_state(state["gen"])


@STRATEGIES.register("sandwich")
class SandwichStrategy(SposStrategy):
    """The sandwich rule (Yu et al. 2019; BigNAS, Yu et al. 2020): each episode of a step trains the space's
    largest path, its smallest and ``random_paths`` drawn ones, their gradients summed (then averaged over the
    step's episodes).  With
    ``distill`` (in-place distillation) every path but the largest learns the largest path's query
    predictions (soft targets) instead of the labels.  Needs a space with extreme paths (``elastic``)."""

    space_needs = ("sample_path", "extreme_path")

    def __init__(self, supernet: nn.Module, *, steps: int, w_lr: float = 0.05, w_momentum: float = 0.9,
                 w_weight_decay: float = 4e-5, grad_clip: float = 5.0, random_paths: int = 2, distill: bool = True,
                 seed: int = 0) -> None:
        SandwichStrategy.check_options(dict(locals()))
        super().__init__(supernet, steps=steps, w_lr=w_lr, w_momentum=w_momentum, w_weight_decay=w_weight_decay,
                         grad_clip=grad_clip, seed=seed)
        self.random_paths, self.distill = random_paths, distill

    @classmethod
    def check_options(cls, options: dict) -> None:
        super().check_options(options)
        at_least(options, 0, "random_paths")

    def paths(self) -> list:
        """This step's paths: the largest first (the teacher), the smallest, then the drawn ones."""
        return ([self.net.extreme_path(True, self.gen), self.net.extreme_path(False, self.gen)]
                + [self.net.sample_path(self.gen) for _ in range(self.random_paths)])

    def step(self, train_eps, val_eps=None) -> dict[str, float]:
        train_eps = step_episodes(train_eps)
        n = len(train_eps)
        self.net.train()
        self.w_opt.zero_grad(set_to_none=True)
        losses, accs = [], []
        for (largest, *others), ep in zip(self.draw(n, self.paths), train_eps):
            logits = episode_logits(lambda x, p=largest: self.net(x, path=p), ep)
            loss = F.cross_entropy(logits, ep.query_y)
            (loss / n).backward()  # one backward per path: only one path's activations are held at a time
            teacher = logits.detach().softmax(-1)
            for path in others:
                student = episode_logits(lambda x, p=path: self.net(x, path=p), ep)
                ((F.kl_div(student.log_softmax(-1), teacher, reduction="batchmean") if self.distill
                  else F.cross_entropy(student, ep.query_y)) / n).backward()
            losses.append(loss.item())
            accs.append(float((logits.detach().argmax(-1) == ep.query_y).float().mean()))
        self.step_weights()
        loss, acc = self.ranks.average([mean(losses), mean(accs)])
        return {"loss": loss, "accuracy": acc, "lr": self.w_opt.param_groups[0]["lr"]}


# OFA's order on this kind of space: the largest network alone, then kernel, depth, width, and last what
# changes the network's shape most (stage count, downsampling, head, block type)
PROGRESSIVE_PHASES = ([], ["kernels"], ["depths", "convs"], ["widths"], ["stages", "downsampling", "heads"],
                      ["blocks"])


def opened_by_phase(phases) -> list[frozenset]:
    """The dimensions open in each phase: phases accumulate."""
    return [frozenset(d for phase in phases[: k + 1] for d in phase) for k in range(len(phases))]


@STRATEGIES.register("progressive")
class ProgressiveStrategy(SandwichStrategy):
    """Progressive shrinking (once-for-all, Cai et al. 2020): the sandwich rule's steps, but the paths are drawn
    only in the dimensions opened so far; the others stay at their anchor (the largest value, or the first
    listed choice of an unordered dimension).  ``phases`` lists the dimensions each phase opens (an empty first
    phase trains the anchor network alone); ``phase_share`` the share of the steps of each (default equal).
    Phases accumulate, and every dimension of the space must be open in the last one, so that evolution
    afterwards draws from paths that were trained."""

    space_needs = ("sample_path", "extreme_path", "dimensions")

    def __init__(self, supernet: nn.Module, *, steps: int, phases: list = PROGRESSIVE_PHASES,
                 phase_share: list | None = None, w_lr: float = 0.05, w_momentum: float = 0.9,
                 w_weight_decay: float = 4e-5, grad_clip: float = 5.0, random_paths: int = 2, distill: bool = True,
                 seed: int = 0) -> None:
        ProgressiveStrategy.check_options(dict(locals()))
        ProgressiveStrategy.check_space(type(supernet), {"phases": phases})
        super().__init__(supernet, steps=steps, w_lr=w_lr, w_momentum=w_momentum, w_weight_decay=w_weight_decay,
                         grad_clip=grad_clip, random_paths=random_paths, distill=distill, seed=seed)
        share = phase_share or [1.0] * len(phases)
        total = sum(share)
        # phase k runs from step ends[k-1] (0 for k = 0) up to ends[k]
        self.ends = [round(steps * sum(share[: k + 1]) / total) for k in range(len(phases))]
        self.opened = opened_by_phase(phases)

    @classmethod
    def check_options(cls, options: dict) -> None:
        super().check_options(options)
        phases, share = options["phases"], options["phase_share"]
        if not phases or not all(isinstance(p, list) and all(isinstance(d, str) for d in p) for p in phases):
            raise OptionError("phases", f"give a list of phases, each a list of dimension names, got {phases!r}")
        names = [d for p in phases for d in p]
        if len(names) != len(set(names)):
            raise OptionError("phases", f"a dimension is opened twice: {phases!r}")
        if share is not None:
            if len(share) != len(phases):
                raise OptionError("phase_share", f"give one share per phase ({len(phases)}), got {len(share)}")
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in share):
                raise OptionError("phase_share", f"every share must be a number above 0, got {share!r}")

    @classmethod
    def check_space(cls, space: type, options: dict) -> None:
        """Every phase names dimensions of the space, and together they open all of them."""
        dims = tuple(space.dimensions)
        names = [d for p in options["phases"] for d in p]
        unknown = [d for d in names if d not in dims]
        if unknown:
            raise OptionError("phases", f"'{unknown[0]}' is not a dimension of this space; use {', '.join(dims)}")
        never = [d for d in dims if d not in names]
        if never:
            raise OptionError("phases", f"{', '.join(never)} never opened: add them to a phase (the last phase must "
                                        f"draw every dimension evolution searches)")

    @property
    def t(self) -> int:
        """Steps taken: the schedule's count, so a checkpoint's scheduler state resumes the phase too."""
        return self.w_sched.last_epoch

    def phase(self) -> int:
        return next((k for k, end in enumerate(self.ends) if self.t < end), len(self.ends) - 1)

    def paths(self) -> list:
        """The largest path first (the teacher), then the smallest and the drawn ones of the open dimensions,
        each path once (the first phase may have a single one)."""
        open = self.opened[self.phase()]
        drawn = ([self.net.extreme_path(True, self.gen, open=open), self.net.extreme_path(False, self.gen, open=open)]
                 + [self.net.sample_path(self.gen, open=open) for _ in range(self.random_paths)])
        return list(dict.fromkeys(drawn))

    def step(self, train_eps, val_eps=None) -> dict[str, float]:
        phase = self.phase()
        return {**super().step(train_eps, val_eps), "shrink_phase": phase}
