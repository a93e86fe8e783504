"""LOSSES: name -> loss class, built as ``create_loss(name, class_counts, **options)`` into a ``Loss`` called
as ``loss(logits, labels, features=None)``.  Learners take a loss by name, so long-tail losses plug in as
one class and one registry line.

Losses that depend on the class frequencies declare ``needs_counts`` and take ``class_counts`` (images per
class, from the data: never typed by hand; ``create_loss`` passes them).  Every loss equals cross-entropy
at its neutral setting and is computed in log space, so logits of +-1e4 stay finite.  A new loss is one
class in a module here, decorated with ``@LOSSES.register(name)``.
"""

from fsnas_core.plugins import import_submodules

from .base import LOSSES, Loss, checked_counts, create_loss, needs_class_counts
from .episodic import EpisodicLoss
from .long_tail import (CDT, LDAM, SEQL, BalancedSoftmax, ClassBalanced, CountLoss, InfluenceBalanced,
                        effective_number_weights)
from .plain import CrossEntropy, Focal, focal_terms

import_submodules(__name__, __path__)  # every loss module registers itself in LOSSES

__all__ = ["BalancedSoftmax", "CDT", "ClassBalanced", "CountLoss", "CrossEntropy", "EpisodicLoss", "Focal",
           "InfluenceBalanced", "LDAM", "LOSSES", "Loss", "SEQL", "checked_counts", "create_loss",
           "effective_number_weights", "focal_terms", "needs_class_counts"]
