"""One writer per folder: an ``fcntl`` lock on a file inside it, held for the process's life.

A second process is refused with the holder's PID; a killed process leaves no stale lock (the kernel drops
it).  Run folders (``nas.runs.RunDir``) and tune experiment folders (``nas.tuning.driver``) hold one."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import UserError

LOCK_FILE = ".lock"


class RunInUse(UserError):
    """Another process holds the folder's lock."""


class FolderLock:
    def __init__(self, folder: Path, what: str = "run folder") -> None:
        self.folder, self.what = Path(folder), what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Hold ``FOLDER/.lock``; RunInUse naming the holder's PID if another process has it.  A process may
        take its own lock again (POSIX record locks are per process)."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{self.folder} cannot be written ({exc.strerror}); fsnas needs a writable "
                            f"{self.what}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunInUse(f"{self.folder} is in use by process {holder}, which is writing this {self.what}; wait "
                           f"for it to end (or stop it) and try again. Nothing was changed") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: the process's end drops the lock anyway
            pass
