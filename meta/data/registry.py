"""DATASETS: name -> loader.  A loader takes ``root`` (the data root, may be None), keyword-only
``image_size``, ``split_dir``, ``download``, ``cache_dir`` and its own keyword options, and returns a
``FewShotDataset``.  Its signature is the schema of ``data.options`` in the config."""

from ..registry import Registry

DATASETS: Registry = Registry("dataset")
