"""LEARNERS: name -> learner class, built as ``LEARNERS[name](backbone, **options)``."""

from ..registry import Registry

LEARNERS: Registry = Registry("learner")
