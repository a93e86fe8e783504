"""A learner's or pretraining's ``loss`` and ``loss_options``: one check for both places a loss is named."""

from __future__ import annotations

from meta.losses import LOSSES, EpisodicLoss

from ..errors import ConfigError
from .options import check_options, factory_params


def check_loss(key: str, options: dict, episodic: bool) -> None:
    """``<key>.loss`` names a loss and ``<key>.loss_options`` are its options; ``episodic``: the loss is used on
    episodes, which must be able to give it what it needs (checked by building it, before any run folder)."""
    loss = options.get("loss")
    if loss is not None and loss not in LOSSES:
        raise ConfigError(f"{key}.loss: unknown loss '{loss}'; choose one of {', '.join(LOSSES)}", key=f"{key}.loss")
    if options.get("loss_options"):
        check_options(f"{key}.loss_options", options["loss_options"],
                      factory_params(LOSSES[loss or "cross_entropy"], ("self", "class_counts")), f"loss {loss}")
    if episodic:
        try:  # the episodic loss refuses what episodes cannot give it (ib) and bad values
            EpisodicLoss(loss or "cross_entropy", options.get("loss_options"))
        except ValueError as exc:
            raise ConfigError(f"{key}.loss: {exc}", key=f"{key}.loss") from None
