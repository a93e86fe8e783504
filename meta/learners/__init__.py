"""Learners: ProtoNet, MAML (first/second order, ANIL, Meta-SGD), MTL phase 2, the fine-tune baseline.  A new
learner is one module here whose class is decorated with ``@LEARNERS.register(name)``."""

from fsnas_core.plugins import import_submodules

from .base import GIVEN, Learner
from .fast_weights import FastModel, MetaModel
from .finetune import FineTune
from .maml import MAML
from .mtl import MTL
from .protonet import ProtoNet, prototype_logits, prototypes
from .registry import LEARNERS

import_submodules(__name__, __path__)  # every learner module registers itself in LEARNERS


def create_learner(name: str, model, **options) -> Learner:
    return LEARNERS[name](model, **options)


__all__ = ["GIVEN", "LEARNERS", "FastModel", "FineTune", "Learner", "MAML", "MetaModel", "MTL", "ProtoNet",
           "create_learner", "prototype_logits", "prototypes"]
