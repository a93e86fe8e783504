"""Search strategies: how a supernet is trained and how its architecture is chosen.

``STRATEGIES[name]`` is a ``SearchStrategy`` class; ``create_strategy`` builds it with what its traits say
it takes.  Each offers ``step(train_episodes, val_episodes) -> metrics`` (the step's meta-batch,
``search.meta_batch`` episodes of each, or one episode; the loss is the mean over them), ``result() ->
Genotype`` (a differentiable one) and ``state_dict()/load_state_dict()`` (the search loop owns checkpoints).
On several ranks (``self.ranks``, ``meta.parallel``) each rank steps on its share of the meta-batch and the
gradients are averaged before every optimiser step (and before clipping), so N ranks of B episodes step as
one process of N·B; a class that does so declares ``data_parallel``.  The loop,
the pipeline and the config checks ask the traits, never the name; a new strategy is one class (here, or in
``single_path`` for one that draws paths) and its ``@STRATEGIES.register`` line.  (In configs the key is still ``search.sampler``.)

- ``darts``: bilevel; weights on meta-train episodes, architecture parameters on meta-val episodes, first
  order or second order (DARTS's unrolled step with a finite-difference Hessian-vector product).
- ``gdas``: the same bilevel loop on a supernet whose mixed mode samples one op per edge by hard
  Gumbel-softmax, with the temperature annealed from ``tau_max`` to ``tau_min``.
- ``spos``, ``sandwich``, ``progressive``: single-path training, the architecture chosen afterwards by
  evolution (``nas.search.single_path``, registered here when this module is imported).
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Sequence, TypeVar

import torch
from torch import nn

from fsnas_core.options import OptionError, above_zero, at_least, in_range, one_of
from fsnas_core.registry import Registry
from meta.episodes import Episode
from meta.optim_state import load_optimizer_state
from meta.parallel import Ranks
from search_spaces import CellGenotype, DartsGenotype
from search_spaces.darts import edge_offset

from .latency import LatencyObjective
from .objective import episode_loss

STRATEGIES: Registry = Registry("search strategy")

# constructor arguments the search fills (from search.steps, the run's seed, search.latency), never options
FILLED = ("supernet", "steps", "seed", "latency")
T = TypeVar("T")


def step_episodes(episodes: Episode | Sequence[Episode] | None) -> list[Episode]:
    """A step's episodes: its meta-batch (a sequence), or one episode."""
    if episodes is None:
        return []
    return [episodes] if isinstance(episodes, Episode) else list(episodes)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class SearchStrategy:
    """Declared traits; the loop, the pipeline and the config checks ask these."""

    differentiable: ClassVar[bool] = False  # trains arch_parameters(): alpha logged while searching
    chooses_by_evolution: ClassVar[bool] = False  # True: evolution in the trained supernet; False: result()
    takes_seed: ClassVar[bool] = False  # draws its own paths from a generator seeded with the run's seed
    takes_latency: ClassVar[bool] = False  # a LatencyObjective (latency=) in its architecture loss
    needs_weighting: ClassVar[str | None] = None  # the supernet's space_options.weighting it needs
    # what the space's supernet class must have (true attributes): checked against search.space at config time
    space_needs: ClassVar[tuple[str, ...]] = ()
    # averages its gradients over ``ranks`` before every optimiser step: may run on several workers
    data_parallel: ClassVar[bool] = False
    ranks: Ranks = Ranks()  # data-parallel ranks sharing each step's episodes (set by the search loop)

    def step(self, train_eps: Sequence[Episode], val_eps: Sequence[Episode]) -> dict[str, float]:
        raise NotImplementedError

    def draw(self, count: int, one: Callable[[], T]) -> list[T]:
        """This rank's ``count`` draws of the step (one per episode of its share), in episode order.  Every rank
        draws the whole step's ``world * count`` from the same generator and keeps its slice, so the ranks'
        generators stay equal and N ranks draw for their episodes what one process draws for all of them."""
        every = [one() for _ in range(count * self.ranks.world)]
        return every[self.ranks.rank * count:(self.ranks.rank + 1) * count]

    def step_weights(self) -> None:
        """The weight step (``self.w_opt``, ``self.w_sched``): the gradients averaged over the ranks, then
        clipped to ``self.grad_clip`` as one process would clip them."""
        weights = list(self.net.weight_parameters())
        self.ranks.average_gradients(weights)
        nn.utils.clip_grad_norm_(weights, self.grad_clip)
        self.w_opt.step()
        self.w_sched.step()

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} chooses its architecture by evolutionary search after "
                                  f"training (nas.search.evolution.evolve)")

    def state_dict(self) -> dict:  # what a checkpoint needs to resume (optimisers, schedules, generators)
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


def create_strategy(name: str, supernet: nn.Module, *, steps: int, seed: int,
                    latency: LatencyObjective | None = None, options: dict | None = None) -> SearchStrategy:
    """``STRATEGIES[name]`` given the steps, and the seed and latency objective when its traits take them."""
    cls = STRATEGIES[name]
    given = {"steps": steps, **({"seed": seed} if cls.takes_seed else {}),
             **({"latency": latency} if cls.takes_latency else {})}
    return cls(supernet, **given, **(options or {}))


def check_weight_options(options: dict) -> None:
    """The supernet weights' SGD settings and gradient clipping, which every strategy here takes."""
    in_range(options, 0.0, 1.0, "w_momentum")
    at_least(options, 0.0, "w_weight_decay")
    above_zero(options, "grad_clip")


def sgd_schedule(params, lr: float, momentum: float, weight_decay: float, steps: int) -> tuple:
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr / 50)


@STRATEGIES.register("darts")
class DartsStrategy(SearchStrategy):
    differentiable = True
    data_parallel = True
    space_needs = ("differentiable",)  # a mixed mode with architecture parameters
    takes_latency = True

    def __init__(self, supernet: nn.Module, *, steps: int, latency: LatencyObjective | None = None,
                 w_lr: float = 0.025, w_momentum: float = 0.9, w_weight_decay: float = 3e-4, arch_lr: float = 3e-4,
                 arch_weight_decay: float = 1e-3, order: str = "first", grad_clip: float = 5.0,
                 max_skip: int = 2) -> None:
        DartsStrategy.check_options(dict(locals()))
        self.net, self.order, self.grad_clip, self.max_skip = supernet, order, grad_clip, max_skip
        self.w_opt, self.w_sched = sgd_schedule(supernet.weight_parameters(), w_lr, w_momentum, w_weight_decay, steps)
        self.a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999),
                                      weight_decay=arch_weight_decay)
        self.w_momentum, self.w_weight_decay = w_momentum, w_weight_decay
        self.steps, self.t = steps, 0
        self.latency = latency  # None: accuracy only; else the latency-aware architecture loss

    @classmethod
    def check_options(cls, options: dict) -> None:
        check_weight_options(options)
        one_of(options, "order", ("first", "second"))
        at_least(options, 0.0, "arch_weight_decay")

    def _decay_aux_skip(self) -> None:
        """DARTS-: the auxiliary skip's weight falls linearly from its initial value to 0 at the last step."""
        if getattr(self.net, "aux_skip", 0) > 0:
            self.net.aux_beta.fill_(self.net.aux_skip * (1 - self.t / max(self.steps - 1, 1)))

    def _loss(self, ep: Episode) -> tuple[torch.Tensor, float]:
        return episode_loss(self.net, ep)

    def _backward_mean(self, eps: list[Episode], latency: LatencyObjective | None = None) -> tuple:
        """The mean loss over ``eps`` (with the latency term when given) backpropagated, one backward per episode;
        (mean loss, mean accuracy, latency in ms or None)."""
        losses, accs, lat = [], [], None
        for ep in eps:
            loss, acc = self._loss(ep)
            losses.append(loss.item())
            accs.append(acc)
            if latency is not None:
                loss, lat = latency(loss)
            (loss / len(eps)).backward()
        return mean(losses), mean(accs), lat

    def step(self, train_eps: Sequence[Episode] | Episode, val_eps: Sequence[Episode] | Episode) -> dict[str, float]:
        train_eps, val_eps = step_episodes(train_eps), step_episodes(val_eps)
        self.net.train()
        self._decay_aux_skip()
        self.t += 1
        alphas = self.net.arch_parameters()
        # 1. architecture step on meta-validation episodes, its gradient averaged over the ranks
        self.a_opt.zero_grad(set_to_none=True)
        extra = {}
        if self.order == "second":
            val_loss, val_acc = self._unrolled_arch_grad(train_eps, val_eps)  # the whole meta-batch's
            if self.latency is not None:  # A * grad CE + CE * grad A + grad B with the whole meta-batch's CE
                extra["latency_ms"] = self.latency.add_to_grads(alphas, self.ranks.average([val_loss])[0])
        else:
            val_loss, val_acc, lat = self._backward_mean(val_eps, self.latency)
            self.ranks.average_gradients(alphas)
            if lat is not None:
                extra["latency_ms"] = lat
        self.a_opt.step()
        # 2. weight step on meta-training episodes
        self.w_opt.zero_grad(set_to_none=True)
        loss, acc, _ = self._backward_mean(train_eps)
        for p in alphas:
            p.grad = None  # the weight step must not leave gradients on alpha for the next arch step
        self.step_weights()
        loss, acc, val_loss, val_acc = self.ranks.average([loss, acc, val_loss, val_acc])
        return {"loss": loss, "accuracy": acc, "val_loss": val_loss, "val_accuracy": val_acc,
                "lr": self.w_opt.param_groups[0]["lr"], **extra}

    def _mean_grads(self, eps: list[Episode], *groups: list[torch.Tensor]) -> tuple:
        """The gradients of the mean loss over ``eps`` w.r.t. each group of tensors (None where unused), one
        episode at a time; (gradients per group, mean loss, mean accuracy)."""
        totals = [[None] * len(g) for g in groups]
        losses, accs = [], []
        for ep in eps:
            loss, acc = self._loss(ep)
            losses.append(loss.item())
            accs.append(acc)
            for k, group in enumerate(groups):
                grads = torch.autograd.grad(loss / len(eps), group, retain_graph=k < len(groups) - 1,
                                            allow_unused=True)
                totals[k] = [g if t is None else t if g is None else t + g for t, g in zip(totals[k], grads)]
        return totals, mean(losses), mean(accs)

    def _unrolled_arch_grad(self, train_eps, val_eps) -> tuple[float, float]:
        """DARTS second order: grad_a L_val(w - xi grad_w L_train(w, a), a), with the Hessian-vector
        product replaced by a central finite difference (Liu et al. 2019, eq. 7-8).  L is the mean over the
        step's episodes: the virtual step and the finite difference's direction use the gradients of the whole
        meta-batch (averaged over the ranks), so the ranks perturb the same weights, and its three terms are
        averaged before they are combined, as one process combines them: the gradient left in ``alpha.grad``
        is the whole meta-batch's."""
        train_eps, val_eps = step_episodes(train_eps), step_episodes(val_eps)
        weights = list(self.net.weight_parameters())
        alphas = list(self.net.arch_parameters())
        xi = self.w_opt.param_groups[0]["lr"]
        backup = [w.detach().clone() for w in weights]
        (grads,), _, _ = self._mean_grads(train_eps, weights)
        grads = self.ranks.average_tensors(grads, weights)
        with torch.no_grad():
            for w, g in zip(weights, grads):
                if g is not None:
                    w.sub_(xi * (g + self.w_weight_decay * w))
        (dalpha, dw), val_loss, val_acc = self._mean_grads(val_eps, alphas, weights)
        dw = self.ranks.average_tensors(dw, weights)
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)
        vec = [g if g is not None else torch.zeros_like(w) for g, w in zip(dw, weights)]
        eps = 0.01 / (torch.cat([v.flatten() for v in vec]).norm() + 1e-12)
        hvp = []
        for sign in (1.0, -2.0):
            with torch.no_grad():
                for w, v in zip(weights, vec):
                    w.add_(sign * eps * v)
            (g,), _, _ = self._mean_grads(train_eps, alphas)
            hvp.append(g)
        with torch.no_grad():
            for w, v in zip(weights, vec):
                w.add_(eps * v)  # back to w
        terms = self.ranks.average_tensors([*dalpha, *hvp[0], *hvp[1]], alphas * 3)
        dalpha, hvp = terms[:len(alphas)], (terms[len(alphas):2 * len(alphas)], terms[2 * len(alphas):])
        for a, da, gp, gn in zip(alphas, dalpha, *hvp):
            da = da if da is not None else torch.zeros_like(a)
            h = ((gp if gp is not None else 0) - (gn if gn is not None else 0)) / (2 * eps)
            a.grad = da - xi * h
        return val_loss, val_acc

    def result(self):
        return cap_skips(self.net.derive(), self.net, self.max_skip)

    def state_dict(self) -> dict:
        return {"w_opt": self.w_opt.state_dict(), "w_sched": self.w_sched.state_dict(),
                "a_opt": self.a_opt.state_dict(), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        load_optimizer_state(self.w_opt, self.w_sched, state["w_opt"], state["w_sched"])
        load_optimizer_state(self.a_opt, None, state["a_opt"], None)
        self.t = int(state["t"])


@STRATEGIES.register("gdas")
class GdasStrategy(DartsStrategy):
    needs_weighting = "gumbel"

    def __init__(self, supernet: nn.Module, *, steps: int, tau_max: float = 10.0, tau_min: float = 0.1,
                 **options) -> None:
        if getattr(supernet, "weighting", None) != self.needs_weighting:
            raise ValueError("gdas needs a supernet with weighting 'gumbel' (set search.space_options.weighting)")
        super().__init__(supernet, steps=steps, **options)
        check_temperatures({"tau_max": tau_max, "tau_min": tau_min})
        self.tau_max, self.tau_min = tau_max, tau_min

    @classmethod
    def check_options(cls, options: dict) -> None:
        super().check_options(options)
        check_temperatures(options)

    def step(self, train_eps, val_eps) -> dict[str, float]:
        # exponential annealing: tau_max at the first step, tau_min at the last
        frac = self.t / max(self.steps - 1, 1)
        self.net.tau = self.tau_max * (self.tau_min / self.tau_max) ** frac
        return {**super().step(train_eps, val_eps), "tau": self.net.tau}


def check_temperatures(options: dict) -> None:
    """GDAS's Gumbel temperatures: above 0, annealed downwards."""
    above_zero(options, "tau_max", "tau_min")
    if options["tau_min"] > options["tau_max"]:
        raise OptionError("tau_min", f"{options['tau_min']} is above tau_max {options['tau_max']}; the temperature "
                                     f"is annealed from tau_max down to tau_min")


def cap_skips(genotype, supernet, max_skip: int):
    """Collapse guard: keep at most ``max_skip`` skip connections per DARTS cell, replacing the weakest
    skips by their edge's best parametric op (the cap of P-DARTS / DARTS+)."""
    if not isinstance(genotype, DartsGenotype) or max_skip < 0:
        return genotype
    cells = {}
    for name, alpha in (("normal", supernet.alpha_normal), ("reduce", supernet.alpha_reduce)):
        w = torch.softmax(alpha.detach(), -1)
        cell = getattr(genotype, name)
        skip = supernet.op_index.get("skip_connect")
        edges = [(i, j, op, src) for i, node in enumerate(cell.nodes) for j, (op, src) in enumerate(node)]
        skips = sorted((e for e in edges if e[2] == "skip_connect"),
                       key=lambda e: float(w[_edge(e[0], e[3]), skip]))
        nodes = [list(node) for node in cell.nodes]
        for i, j, _, src in skips[: max(0, len(skips) - max_skip)]:
            row = w[_edge(i, src)].clone()
            for free in ("none", "skip_connect"):
                if free in supernet.op_index:
                    row[supernet.op_index[free]] = -1.0
            nodes[i][j] = (supernet.op_names[int(row.argmax())], src)
        cells[name] = CellGenotype(tuple(tuple(n) for n in nodes), cell.concat)
    return DartsGenotype(normal=cells["normal"], reduce=cells["reduce"], channels=genotype.channels,
                         cells=genotype.cells, stem_multiplier=genotype.stem_multiplier)


def _edge(node: int, src: int) -> int:
    return edge_offset(node) + src


def alpha_entropy(alpha: torch.Tensor) -> float:
    """Mean entropy of the per-edge op distributions, normalised to [0, 1] (1 = uniform, undecided)."""
    p = torch.softmax(alpha.detach(), -1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean() / math.log(alpha.shape[-1]))


# the single-path strategies register themselves (spos, sandwich, progressive); imported last, as they build on
# this module's base class and helpers
from . import single_path  # noqa: E402,F401
