"""Run folders: the resolved config, metrics.jsonl, atomic checkpoints and summary.json.

Layout::

    RUN/config.yaml        the resolved config (file + overrides + defaults)
    RUN/metrics.jsonl      one JSON object per logged step
    RUN/checkpoints/*.pt   tensors and plain values only, loadable with weights_only=True
    RUN/summary.json       the headline figures
    RUN/genotype.yaml      the architecture (searched, or the trained backbone as a genotype)
    RUN/model.pt           a trained backbone's state dict
    RUN/learner.pt         what a learner predicts with besides the backbone (a MAML head, inner rates)

Every file is written to a temporary name first and renamed, so a kill at any moment leaves either the
old or the new file, never half of one.  A process that writes a run folder (a new run, or ``--resume``) holds
an ``fcntl`` lock on ``RUN/.lock`` for as long as it has the folder open: a second process is refused with the
holder's PID, and a killed process leaves no stale lock (the kernel drops it).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .config import RunConfig, dump_config
from .errors import UserError
from .folder_lock import LOCK_FILE, FolderLock, RunInUse  # noqa: F401  (RunInUse: raised by lock)

METRICS_FILE = "metrics.jsonl"
GENOTYPE_FILE = "genotype.yaml"
MODEL_FILE = "model.pt"
LEARNER_FILE = "learner.pt"


def to_json(obj: Any, indent: int | None = None) -> str:
    """Strict JSON: a NaN or infinite float (a diverged figure) is written as null, never as a bare NaN that
    JSON readers refuse; other non-JSON values (tensors, numpy scalars) as floats."""
    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(obj), indent=indent, allow_nan=False, default=lambda v: clean(float(v)))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # called with every metrics record after it is written (Ray Tune trials report through this)
        self.listeners: list[Callable[[dict], None]] = []
        self._lock = FolderLock(self.path)
        self.config_text: str | None = None  # the config this process runs with, recorded in every checkpoint

    # -- creating and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: RunConfig, out: str | Path | None = None) -> "RunDir":
        """A new run folder, made atomically and locked: ``out`` if given (absent or an empty folder), else
        out_dir/name-time.  Two processes creating the same folder: one wins, the other is refused."""
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
            for n in range(1000):  # bounded by the number of runs started this second
                path = Path(cfg.out_dir) / (f"{cfg.name}-{stamp}" + (f"-{n}" if n else ""))
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
            else:
                raise UserError(f"1000 run folders named {cfg.name}-{stamp}* exist in {cfg.out_dir}; give --out")
        else:
            path = Path(out)
            if path.exists() and not path.is_dir():
                raise UserError(f"--out {path} is a file, not a folder; nothing was overwritten. Choose another --out")
            _check_empty(path, ignore={LOCK_FILE})  # a lock alone: a creation killed before its config
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"--out {path} cannot be created ({exc.strerror}); choose a folder you can "
                                f"write") from None
        run = cls(path)
        run.lock()
        _check_empty(path, ignore={LOCK_FILE})  # again, under the lock: another process may have been first
        run.config_text = dump_config(cfg)
        atomic_write_bytes(run.config_path, run.config_text.encode())
        return run

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """An existing run folder, to read."""
        run = cls(Path(path))
        if not run.config_path.is_file():
            raise UserError(f"{path} is not a run folder (no config.yaml in it); give the folder a "
                            f"previous fsnas command wrote")
        return run

    @classmethod
    def resume(cls, path: str | Path) -> "RunDir":
        """An existing run folder, to write (``--resume``): refused while another process holds it."""
        run = cls.open(path)
        run.lock()
        run.config_text = run.config_path.read_text()
        return run

    def lock(self) -> None:
        """Hold the folder's lock for this process (``nas.folder_lock``); RunInUse naming the holder's PID."""
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def checkpoint_path(self, name: str) -> Path:
        return self.path / "checkpoints" / f"{name}.pt"

    # -- metrics --------------------------------------------------------------------------------
    def log(self, record: dict, file: str = METRICS_FILE) -> None:
        with open(self.path / file, "a") as f:
            f.write(to_json(record) + "\n")
        for listener in self.listeners:
            listener(record)

    def read_metrics(self, file: str = METRICS_FILE) -> list[dict]:
        path = self.path / file
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
        return out

    def truncate_metrics(self, phase: str, after_step: int, file: str = METRICS_FILE) -> None:
        """Drop ``phase`` lines logged after ``after_step`` (written after the checkpoint we resume from)."""
        keep = [r for r in self.read_metrics(file) if not (r.get("phase") == phase and r.get("step", 0) > after_step)]
        atomic_write_bytes(self.path / file, "".join(to_json(r) + "\n" for r in keep).encode())

    # -- checkpoints and summary ------------------------------------------------------------------
    def save_checkpoint(self, name: str, state: dict) -> Path:
        """``state`` plus the config it was made with (``config``: YAML text), so a resume can check what changed."""
        path = self.checkpoint_path(name)
        atomic_torch_save({**state, "config": self.config_text} if self.config_text else state, path)
        return path

    def load_checkpoint(self, name: str, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict | None:
        """``mmap``: tensors are mapped from the file, not read (for a look at a checkpoint's plain values)."""
        path = self.checkpoint_path(name)
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except Exception as exc:
            raise UserError(f"{path} is not a readable fsnas checkpoint ({type(exc).__name__}); "
                            f"it is never unpickled as code. Remove it to start that phase again") from None

    def write_summary(self, summary: dict) -> None:
        atomic_write_bytes(self.summary_path, (to_json(summary, indent=2) + "\n").encode())

    def read_summary(self) -> dict:
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}


def _check_empty(path: Path, ignore: set[str] = frozenset()) -> None:
    if path.is_dir() and any(p.name not in ignore for p in path.iterdir()):
        raise UserError(f"{path} already exists and is not empty; nothing was overwritten. Choose another "
                        f"--out, or continue that run with --resume {path}")
