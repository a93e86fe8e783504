"""A disk cache of decoded datasets, so PNG/JPEG decoding happens once per machine, not once per run.

Entries are plain tensors and lists written with ``torch.save`` and read back with ``weights_only=True``:
nothing in the cache is ever unpickled as code.  Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from .base import FewShotDataset

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("FSNAS_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fsnas"


def cache_key(**parts) -> str:
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def folder_fingerprint(files: list[Path]) -> dict:
    """Cheap fingerprint of source files (count, names, total size): a changed folder misses the cache."""
    h = hashlib.sha256()
    size = 0
    for f in files:
        h.update(str(f).encode())
        size += f.stat().st_size
    return {"files": len(files), "bytes": size, "names": h.hexdigest()[:16]}


def load_or_build(cache_dir: Path | None, key: str, build: Callable[[], FewShotDataset]) -> FewShotDataset:
    """Return the cached dataset for ``key`` or build, store and return it. ``cache_dir=None`` disables caching."""
    if cache_dir is None:
        return build()
    path = Path(cache_dir) / f"{key}.pt"
    if path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            return FewShotDataset(**blob)
        except Exception as exc:  # a truncated or foreign file: rebuild rather than fail
            log.warning("ignoring unreadable dataset cache %s (%s); rebuilding", path, exc)
    ds = build()
    blob = {"name": ds.name, "images": ds.images, "labels": ds.labels, "class_names": list(ds.class_names),
            "splits": {k: list(v) for k, v in ds.splits.items()}, "mean": tuple(ds.mean), "std": tuple(ds.std),
            "train_rotations": ds.train_rotations, "info": dict(ds.info)}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:  # through Python: a full disk is an OSError, not torch's RuntimeError
            torch.save(blob, f)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home or a full disk must not stop a run
        log.warning("could not write dataset cache %s (%s)", path, exc)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return ds
