"""Learners: ProtoNet now; MAML/FOMAML/ANIL, MTL and fine-tune register here the same way."""

from .base import Learner
from .protonet import ProtoNet, prototype_logits, prototypes
from .registry import LEARNERS


def create_learner(name: str, model, **options) -> Learner:
    return LEARNERS[name](model, **options)


__all__ = ["LEARNERS", "Learner", "ProtoNet", "create_learner", "prototype_logits", "prototypes"]
