"""Files fsnas reads from its users and writes for them, each way of failing with one message (a ``UserError``).

- ``to_json`` / ``write_json``: strict JSON for every JSON file fsnas writes (a NaN or infinite figure is written
  as null, and said so in a warning).
- ``atomic_write_bytes`` / ``atomic_torch_save``: written to a temporary name and renamed, so a kill leaves the old
  file or the new one.  A failed write (a full disk, a read-only place) removes the temporary file, keeps the old
  file as it was and raises ``WriteFailed`` naming the file.
- ``load_torch_file``: a torch file given by a user (a checkpoint, weights), read with ``weights_only=True``; a
  pickle of Python objects, a truncated or foreign file is refused with one message, never unpickled as code.
- ``check_new_output`` / ``make_output_dir``: an ``--out`` that can be made: not an existing file or a folder
  that is not empty, not inside a file, in a place this process can write.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import UserError

log = logging.getLogger(__name__)

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


# -- strict JSON ----------------------------------------------------------------------------------
def _plain(x: Any, path: str, bad: list[str]) -> Any:
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        bad.append(path or "(top)")
        return None
    if isinstance(x, dict):
        return {k: _plain(v, f"{path}.{k}" if path else str(k), bad) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, f"{path}.{i}" if path else str(i), bad) for i, v in enumerate(x)]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if hasattr(x, "tolist"):  # tensors, numpy arrays and scalars
        return _plain(x.tolist(), path, bad)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    try:
        return _plain(float(x), path, bad)
    except (TypeError, ValueError):
        return str(x)


def to_json(obj: Any, indent: int | None = None, nonfinite: list[str] | None = None) -> str:
    """Strict JSON: a NaN or infinite float (a diverged figure) is written as null, never as a bare NaN that JSON
    readers refuse (their key paths are appended to ``nonfinite``); tensors and numpy values as numbers."""
    bad = nonfinite if nonfinite is not None else []
    return json.dumps(_plain(obj, "", bad), indent=indent, allow_nan=False)


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """``obj`` as strict JSON in ``path`` (atomically); a warning names the non-finite values written as null."""
    bad: list[str] = []
    text = to_json(obj, indent=indent, nonfinite=bad)
    if bad:
        log.warning("%s: %d value(s) were not finite (NaN or infinite) and are written as null: %s", path, len(bad),
                    ", ".join(bad[:8]) + (", ..." if len(bad) > 8 else ""))
    atomic_write_bytes(Path(path), (text + "\n").encode())


# -- writing --------------------------------------------------------------------------------------
class WriteFailed(UserError):
    """A file could not be written: which file, why (a full disk: said so), what was kept, what to do."""

    def __init__(self, path: Path, exc: OSError, kept: str, then: str = "") -> None:
        self.path, self.exc, self.kept = Path(path), exc, kept
        self.disk_full = exc.errno in DISK_FULL
        reason = (f"the disk is full ({exc.strerror})" if self.disk_full
                  else exc.strerror or str(exc) or type(exc).__name__)
        self.then = then or ("Free some space and run again" if self.disk_full else "Choose a place you can write")
        super().__init__(f"{path} could not be written: {reason}; {kept}. {self.then}")

    def then_(self, then: str) -> "WriteFailed":
        """The same failure with another next step (a run folder: continue it with --resume)."""
        return WriteFailed(self.path, self.exc, self.kept, then)


def _kept(path: Path, existed: bool) -> str:
    return f"the previous {path.name} is kept unchanged" if existed else "nothing was left in its place"


def _atomic(path: Path, write: Callable[[Any], None]) -> None:
    path = Path(path)
    existed, tmp = path.exists(), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise WriteFailed(path, exc, _kept(path, existed)) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` into memory first: written to a path, torch reports a full disk as a RuntimeError that
    does not say so; written through Python, it is an OSError like any other write."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic(path, lambda f: f.write(buf.getbuffer()))


def append_line(path: Path, line: str) -> None:
    """One line added to a log file (metrics.jsonl); a reader skips a line that a failed write cut."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise WriteFailed(path, exc, "the lines before it are kept") from None


# -- reading torch files ----------------------------------------------------------------------------
def load_torch_file(path: str | Path, what: str, fix: str, map_location: Any = "cpu", mmap: bool = False,
                    keys: tuple[str, ...] = (), error: type[UserError] = UserError) -> Any:
    """A torch file a user gave (or fsnas wrote and a user may have replaced), with tensors and plain values
    only.  ``what``: what it should be ('fsnas checkpoint'); ``fix``: the sentence that tells the user what to do;
    ``keys``: entries the loaded dict must have.  Anything else raises ``error`` with one message."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist; {fix}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:
        text = str(exc)
        reason = ("it holds pickled Python objects, not only tensors and plain values" if "Weights only load" in text
                  else f"it is truncated or not a file torch.save wrote ({type(exc).__name__})")
        raise error(f"{path} is not a readable {what}: {reason}; it is never unpickled as code. {fix}") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise error(f"{path} is not a {what}: it has no '{missing[0]}'. {fix}")
    return obj


# -- --out ------------------------------------------------------------------------------------------
def check_new_output(out: str | Path, kind: str = "folder", flag: str = "--out", ignore: frozenset = frozenset(),
                     hint: str = "") -> Path:
    """``out`` as a new ``kind`` ('folder': absent or empty but for ``ignore``; 'file': absent; 'parent': a folder
    to make new ones in, which may hold others), or UserError saying why it cannot be (``hint``: what else to do
    with a folder that is not empty).  Creates nothing."""
    path = Path(out)
    if path.exists() and kind == "parent" and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder; nothing was overwritten. Choose another {flag}")
    if path.exists() and kind != "parent":
        if kind == "file":
            raise UserError(f"{flag} {path} exists; nothing was overwritten. Give a new file name")
        if not path.is_dir():
            raise UserError(f"{flag} {path} is a file, not a folder; nothing was overwritten. Choose another {flag}")
        if any(p.name not in ignore for p in path.iterdir()):
            raise UserError(f"{path} already exists and is not empty; nothing was overwritten. Choose another "
                            f"{flag}{hint}")
    place = path if path.is_dir() else path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        raise UserError(f"{flag} {path} cannot be created: {place} is a file, not a folder. Choose another {flag}")
    if not os.access(place, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path} cannot be created: {place} is not writable (permission denied). Choose a "
                        f"place you can write")
    return path


def make_output_dir(path: Path, flag: str = "--out") -> None:
    """``path`` and its missing parents (after ``check_new_output``); UserError if the system refuses."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{flag} {path} cannot be created ({exc.strerror}); choose a place you can write") from None
