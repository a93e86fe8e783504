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

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from .config import RunConfig, dump_config
from .errors import UserError
from .files import (WriteFailed, append_line, atomic_torch_save, atomic_write_bytes, check_new_output,  # noqa: F401
                    load_torch_file, make_output_dir, to_json, write_json)
from .folder_lock import LOCK_FILE, FolderLock, RunInUse  # noqa: F401  (RunInUse: raised by lock)

METRICS_FILE = "metrics.jsonl"
GENOTYPE_FILE = "genotype.yaml"
MODEL_FILE = "model.pt"
LEARNER_FILE = "learner.pt"




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
        out_dir/name-time.  Two processes creating the same folder: one wins, the other is refused.  A folder
        this call made is removed again if it cannot be made whole (its lock and config)."""
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            check_new_output(cfg.out_dir, kind="parent", flag="out_dir")
            make_output_dir(Path(cfg.out_dir), flag="out_dir")
            for n in range(1000):  # bounded by the number of runs started this second
                path = Path(cfg.out_dir) / (f"{cfg.name}-{stamp}" + (f"-{n}" if n else ""))
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
            else:
                raise UserError(f"1000 run folders named {cfg.name}-{stamp}* exist in {cfg.out_dir}; give --out")
            made = path
        else:
            path = cls.check_out(out)
            made = _first_missing(path)
            make_output_dir(path)
        run = cls(path)
        try:
            run.lock()
            _check_empty(path, ignore={LOCK_FILE})  # again, under the lock: another process may have been first
            run.config_text = dump_config(cfg)
            atomic_write_bytes(run.config_path, run.config_text.encode())
        except BaseException:
            ours = run._lock.held  # never remove a folder another process holds
            run.unlock()
            if ours and made is not None and not run.config_path.exists():
                shutil.rmtree(made, ignore_errors=True)
            raise
        return run

    @staticmethod
    def check_out(out: str | Path) -> Path:
        """``out`` can be a new run folder: absent, or empty but for a lock (a creation killed before its config).
        Commands check it before any work; ``create`` checks again."""
        return check_new_output(out, ignore={LOCK_FILE}, hint=_resume_hint(Path(out)))

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

    # -- writing and metrics ----------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self):
        """A failed write in this folder says that the last checkpoint is kept and to continue from it."""
        try:
            yield
        except WriteFailed as exc:
            raise exc.then_(("Free some space, then c" if exc.disk_full else "Make it writable, then c")
                            + f"ontinue from the last checkpoint with --resume {self.path}") from None

    def log(self, record: dict, file: str = METRICS_FILE) -> None:
        with self.writing():
            append_line(self.path / file, to_json(record))
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
        with self.writing():
            atomic_write_bytes(self.path / file, "".join(to_json(r) + "\n" for r in keep).encode())

    # -- checkpoints and summary ------------------------------------------------------------------
    def save_checkpoint(self, name: str, state: dict) -> Path:
        """``state`` plus the config it was made with (``config``: YAML text), so a resume can check what changed."""
        path = self.checkpoint_path(name)
        with self.writing():
            atomic_torch_save({**state, "config": self.config_text} if self.config_text else state, path)
        return path

    def save_torch(self, file: str, obj) -> None:
        """A file of the run (model.pt, learner.pt) written atomically, like a checkpoint."""
        with self.writing():
            atomic_torch_save(obj, self.path / file)

    def load_checkpoint(self, name: str, map_location: str | torch.device = "cpu", mmap: bool = False,
                        fix: str = "Remove it to start that phase again") -> dict | None:
        """``mmap``: tensors are mapped from the file, not read (for a look at a checkpoint's plain values);
        ``fix``: what the message about an unreadable one tells the user to do."""
        path = self.checkpoint_path(name)
        if not path.exists():
            return None
        return load_torch_file(path, "fsnas checkpoint", fix, map_location=map_location, mmap=mmap)

    def write_summary(self, summary: dict) -> None:
        with self.writing():
            write_json(self.summary_path, summary)

    def read_summary(self) -> dict:
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}


def _resume_hint(path: Path) -> str:
    return f", or continue that run with --resume {path}"


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what making it creates), or None."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def _check_empty(path: Path, ignore: set[str] = frozenset()) -> None:
    if path.is_dir() and any(p.name not in ignore for p in path.iterdir()):
        raise UserError(f"{path} already exists and is not empty; nothing was overwritten. Choose another "
                        f"--out{_resume_hint(path)}")
