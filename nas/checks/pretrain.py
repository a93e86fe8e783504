"""The pretrain section: many-way pretraining's sizes, sampling, loss, and what it reports on long-tailed data."""

from __future__ import annotations

from meta.pretrain import SAMPLINGS, Pretrainer

from ..config import LongTailConfig, PretrainConfig
from ..errors import ConfigError
from .losses import check_loss
from .options import check_options, factory_params, learning_rate, positive


def check_pretrain(pc: PretrainConfig, lt: LongTailConfig) -> None:
    positive("pretrain.steps", pc.steps, 0)
    for key, value in (("pretrain.batch_size", pc.batch_size), ("pretrain.log_every", pc.log_every),
                       ("pretrain.checkpoint_every", pc.checkpoint_every)):
        positive(key, value)
    check_options("pretrain.options", pc.options,
                  factory_params(Pretrainer, ("self", "backbone", "num_classes", "feature_dim", "steps",
                                              "class_counts")), "pretraining")
    check_loss("pretrain.options", pc.options, episodic=False)
    if pc.sampling not in SAMPLINGS:
        raise ConfigError(f"pretrain.sampling: '{pc.sampling}' is not a sampling; choose one of "
                          f"{', '.join(SAMPLINGS)}", key="pretrain.sampling")
    if pc.crt.sampling not in SAMPLINGS or pc.crt.sampling == "progressive":
        raise ConfigError(f"pretrain.crt.sampling: '{pc.crt.sampling}' is not a fixed sampling; choose "
                          f"instance, class or sqrt", key="pretrain.crt.sampling")
    positive("pretrain.crt.steps", pc.crt.steps, 0)
    for key, wanted in (("pretrain.tau_norm", pc.tau_norm is not None), ("pretrain.crt.steps", pc.crt.steps > 0)):
        if wanted and not (pc.steps and lt.imbalance is not None and lt.heldout and lt.split == pc.split):
            raise ConfigError(f"{key}: reported on held-out base-class images, which need pretraining on a "
                              f"long-tailed split (pretrain.steps > 0, data.long_tail.imbalance, data.long_tail.heldout "
                              f"> 0, data.long_tail.split = pretrain.split)", key=key)
    learning_rate("pretrain.crt.lr", pc.crt.lr)
