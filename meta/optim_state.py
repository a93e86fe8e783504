"""Resuming an optimizer and its schedule from a checkpoint while keeping the settings they were built with.

A checkpoint holds the optimizer's state (momenta) and the schedule's progress, but also the learning rates
and schedule settings of the run that wrote it.  When those equal the settings of the optimizer and schedule
built now from the config, everything is loaded as it was (an exact resume).  When the config changed them —
a user who lowered the learning rate of a diverged run — the new settings take effect at the resumed step
(``initial_lr``, weight decay and the schedule's own settings from the config; the current rate recomputed
from the schedule's closed form), and the momenta are kept."""

from __future__ import annotations

import torch

_DYNAMIC = ("last_epoch", "base_lrs", "verbose")  # schedule state that is progress, not settings


def _groups(optimizer: torch.optim.Optimizer) -> list[dict]:
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def _settings(scheduler) -> dict:
    if scheduler is None:
        return {}
    return {k: v for k, v in scheduler.state_dict().items() if not k.startswith("_") and k not in _DYNAMIC}


def load_optimizer_state(optimizer: torch.optim.Optimizer, scheduler, optimizer_state: dict,
                         scheduler_state: dict | None) -> bool:
    """Load both states; True when the config's settings differed from the checkpoint's and were kept."""
    built, built_schedule = _groups(optimizer), _settings(scheduler)
    built_base = list(scheduler.base_lrs) if scheduler is not None else None
    optimizer.load_state_dict(optimizer_state)
    if scheduler is not None and scheduler_state is not None:
        scheduler.load_state_dict(scheduler_state)
    loaded = _groups(optimizer)
    ignore = ("lr",) if scheduler is not None else ()  # with a schedule the current rate is progress
    changed = _settings(scheduler) != built_schedule or any(
        {k: v for k, v in b.items() if k not in ignore} != {k: v for k, v in l.items() if k not in ignore}
        for b, l in zip(built, loaded))
    if not changed:
        return False
    for group, settings in zip(optimizer.param_groups, built):
        group.update({k: v for k, v in settings.items() if k != "lr" or scheduler is None})
    if scheduler is not None:
        for key, value in built_schedule.items():
            setattr(scheduler, key, value)
        scheduler.base_lrs = built_base
        closed = getattr(scheduler, "_get_closed_form_lr", None)  # StepLR, CosineAnnealingLR; LambdaLR's
        rates = closed() if closed is not None else scheduler.get_lr()  # get_lr is closed-form already
        for group, lr in zip(optimizer.param_groups, rates):
            group["lr"] = lr
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    return True
