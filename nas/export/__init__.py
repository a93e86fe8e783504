"""Export: a search or retrain result as a plain, loadable, deployable backbone with a model card."""

from .job import export
from .loading import load_backbone, read_card
from .sources import ExportError

__all__ = ["ExportError", "export", "load_backbone", "read_card"]
