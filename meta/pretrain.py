"""Many-way pretraining (MTL phase 1, and the backbone of the fine-tune baseline): the backbone plus a linear
classifier over every class of the meta-training split (rotated classes included), trained on seeded
mini-batches drawn uniformly over images — so a long-tailed split stays long-tailed, and the loss is
selectable (``meta.losses``)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import WeightedRandomSampler

from .data import FewShotDataset
from .evaluation import accuracy
from .losses import create_loss
from .optim_state import load_optimizer_state


SAMPLINGS = ("instance", "class", "sqrt", "progressive")


class ImageBatches:
    """Batch ``i`` of ``batch_size`` (image, split-local class) pairs, a function of ``seed`` and ``i`` only.

    ``sampling`` (Kang et al., 2020): ``instance`` draws images uniformly (a long-tailed split stays
    long-tailed); ``class`` draws classes uniformly; ``sqrt`` draws class c with probability ∝ sqrt(n_c);
    ``progressive`` moves from instance to class-balanced over ``total`` batches.  The non-uniform ones go
    through torch's ``WeightedRandomSampler``."""

    def __init__(self, dataset: FewShotDataset, split: str, batch_size: int, seed: int = 0,
                 sampling: str = "instance", total: int | None = None) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got '{sampling}'")
        if sampling == "progressive" and not total:
            raise ValueError("progressive sampling needs the number of batches (total)")
        self.sampling, self.total = sampling, total
        self.split, self.batch_size, self.seed = dataset.split(split), int(batch_size), int(seed)
        self.images = dataset.images
        self.mean = torch.tensor(dataset.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std, dtype=torch.float32).view(1, -1, 1, 1)
        rows = int(self.split.class_ids.numel())
        # one entry per (virtual class, image): class c of a rotated split is row c % rows turned c // rows times
        counts = self.split.image_counts.repeat(self.split.rotations)
        self.classes = torch.arange(self.split.num_classes).repeat_interleave(counts)
        self.slots = torch.cat([torch.arange(int(n)) for n in counts])
        self.rows = rows
        self._image_class_counts = self.class_counts().double()[self.classes]  # n_c of every image's class

    @property
    def num_classes(self) -> int:
        return self.split.num_classes

    def class_counts(self) -> torch.Tensor:
        """Images per class (for class-balanced and logit-adjusted losses)."""
        return torch.bincount(self.classes, minlength=self.num_classes)

    def image_weights(self, index: int) -> torch.Tensor:
        """Probability weight of every image for batch ``index``: n_c^(q-1) for q = 1 (instance), 0 (class),
        1/2 (sqrt); progressive mixes the instance and class-balanced distributions by index / total."""
        n = self._image_class_counts
        if self.sampling == "progressive":
            t = min(index / self.total, 1.0)
            return (1 - t) / len(self.classes) + t / (n * self.num_classes)
        return n ** ({"instance": 1.0, "class": 0.0, "sqrt": 0.5}[self.sampling] - 1)

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + index) % 2**31)
        if self.sampling == "instance":
            return self._gather(torch.randint(len(self.classes), (self.batch_size,), generator=g))
        sampler = WeightedRandomSampler(self.image_weights(index), self.batch_size, replacement=True, generator=g)
        return self._gather(torch.tensor(list(sampler)))

    def every_image(self):
        """All (image, class) pairs of the split in order, ``batch_size`` at a time (for evaluation)."""
        for start in range(0, len(self.classes), self.batch_size):
            yield self._gather(torch.arange(start, min(start + self.batch_size, len(self.classes))))

    def _gather(self, pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.classes[pick]
        rows, turns = y % self.rows, y // self.rows
        x = self.images[self.split.image_index[rows, self.slots[pick]]]
        for k in range(1, self.split.rotations):
            sel = turns == k
            if sel.any():
                x[sel] = torch.rot90(x[sel], k, dims=(2, 3))
        return (x.float().div_(255.0) - self.mean) / self.std, y


class CosineLinear(nn.Linear):
    """Cosine classifier: logits are cosines between the feature and each class's weight row (no bias), the
    input margin-based losses such as LDAM expect.  A subclass of ``nn.Linear`` so cRT and τ-norm take it
    (τ-norm with τ = 1 predicts as it does: the feature's norm is common to every class)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(nn.functional.normalize(x, dim=1), nn.functional.normalize(self.weight, dim=1))


class Pretrainer:
    """SGD with momentum and a cosine schedule over ``steps`` on backbone + classifier: linear, or cosine for a
    loss that declares cosine logits (``Loss.cosine_logits``, LDAM)."""

    def __init__(self, backbone: nn.Module, num_classes: int, feature_dim: int, steps: int, *, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 5e-4, loss: str = "cross_entropy",
                 loss_options: dict | None = None, class_counts: torch.Tensor | None = None) -> None:
        self.backbone, self.steps, self.t = backbone, steps, 0
        device = next(backbone.parameters()).device
        self.loss = create_loss(loss, class_counts=class_counts, **(loss_options or {}))
        head = CosineLinear if self.loss.cosine_logits else nn.Linear
        self.classifier = head(feature_dim, num_classes).to(device)
        params = [*backbone.parameters(), *self.classifier.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / max(steps, 1))))

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        self.backbone.train()
        self.loss.step(self.t, self.steps)  # schedules inside a loss (LDAM's deferred re-weighting)
        self.t += 1
        feats = self.backbone(x).flatten(1)
        logits = self.classifier(feats)
        loss = self.loss(logits, y, features=feats)  # the features matter to losses that need them (IB)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item(), "accuracy": accuracy(logits.detach(), y),
                "lr": self.optimizer.param_groups[0]["lr"]}

    def state_dict(self) -> dict:
        return {"backbone": self.backbone.state_dict(), "classifier": self.classifier.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.backbone.load_state_dict(state["backbone"])
        self.classifier.load_state_dict(state["classifier"])
        load_optimizer_state(self.optimizer, self.scheduler, state["optimizer"], state["scheduler"])
        self.t = int(state.get("t", self.scheduler.last_epoch))


@torch.no_grad()
def base_class_accuracy(backbone: nn.Module, classifier: nn.Module, heldout: ImageBatches,
                        train_counts: torch.Tensor, many: int = 100, few: int = 20) -> dict:
    """Accuracy of a many-way classifier on held-out images of its training classes: overall, balanced (the
    mean over classes), and by how many training images a class had: many (> ``many``), medium, few
    (< ``few``).  A group with no class is None.  The backbone is evaluated with running statistics."""
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    correct = torch.zeros(heldout.num_classes)
    total = torch.zeros(heldout.num_classes)
    try:
        for x, y in heldout.every_image():
            hit = (classifier(backbone(x.to(device)).flatten(1)).argmax(1).cpu() == y).float()
            correct.index_add_(0, y, hit)
            total.index_add_(0, y, torch.ones_like(hit))
    finally:
        backbone.train(was_training)
    seen = total > 0
    per_class = correct / total.clamp_min(1)
    counts = train_counts.to(per_class.device)

    def group(mask: torch.Tensor) -> float | None:
        mask = mask & seen
        return float(per_class[mask].mean()) if bool(mask.any()) else None
    return {"accuracy": float(correct.sum() / total.sum()), "balanced_accuracy": group(torch.ones_like(seen)),
            "many": group(counts > many), "medium": group((counts >= few) & (counts <= many)),
            "few": group(counts < few), "classes": {"many": int((counts > many).sum()),
                                                    "medium": int(((counts >= few) & (counts <= many)).sum()),
                                                    "few": int((counts < few).sum())},
            "thresholds": {"many": many, "few": few}, "images": int(total.sum())}


def retrain_classifier(backbone: nn.Module, batches: ImageBatches, feature_dim: int, steps: int, *,
                       lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4) -> nn.Linear:
    """Classifier re-training (cRT, Kang et al., 2020): the backbone frozen with its running statistics, a new
    zero-initialised linear classifier trained for ``steps`` batches of ``batches`` (class-balanced sampling,
    as the decoupling recipe has it) with SGD and a cosine schedule.  Deterministic given the batches' seed."""
    device = next(backbone.parameters()).device
    classifier = nn.Linear(feature_dim, batches.num_classes).to(device)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    opt = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    was_training = backbone.training
    backbone.eval()
    try:
        for i in range(steps):
            x, y = batches.batch(i)
            with torch.no_grad():
                feats = backbone(x.to(device)).flatten(1)
            loss = nn.functional.cross_entropy(classifier(feats), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    finally:
        backbone.train(was_training)
    return classifier


def tau_normalized(classifier: nn.Linear, tau: float) -> nn.Linear:
    """τ-normalisation (Kang et al., 2020): a copy of ``classifier`` with each class's weight row divided by its
    norm to the power ``tau`` (bias dropped), so head classes lose the larger norms they grew; tau 0 keeps the
    weights."""
    out = nn.Linear(classifier.in_features, classifier.out_features, bias=False).to(classifier.weight.device)
    with torch.no_grad():
        w = classifier.weight
        out.weight.copy_(w / w.norm(dim=1, keepdim=True).clamp_min(1e-12) ** tau)
    return out
