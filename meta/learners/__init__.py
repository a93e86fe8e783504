"""Learners: ProtoNet, MAML (first/second order, ANIL, Meta-SGD), MTL phase 2."""

from .base import Learner
from .maml import MAML, FastModel, MetaModel
from .mtl import MTL
from .protonet import ProtoNet, prototype_logits, prototypes
from .registry import LEARNERS


def create_learner(name: str, model, **options) -> Learner:
    return LEARNERS[name](model, **options)


__all__ = ["LEARNERS", "FastModel", "Learner", "MAML", "MetaModel", "MTL", "ProtoNet", "create_learner", "prototype_logits", "prototypes"]
