"""Helpers for the benchmark scripts: run fsnas commands as subprocesses into run folders that a killed
script, started again with the same arguments, resumes (killed runs) or skips (finished runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fsnas(*args: str, threads: int | None = None) -> None:
    cmd = [sys.executable, "-m", "nas.cli", "-q", *args]
    print("$", " ".join(cmd[2:]), flush=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    subprocess.run(cmd, check=True, cwd=REPO, env=env)


def finished(run: Path) -> bool:
    return (run / "summary.json").is_file()


def ensure_run(run: Path, *args: str, threads: int | None = None) -> dict:
    """Run ``fsnas args --out run``; resume it if a killed attempt left the folder; skip it if finished."""
    if not finished(run):
        if (run / "config.yaml").is_file():
            fsnas(args[0], "--resume", str(run), threads=threads)
        else:
            fsnas(*args, "--out", str(run), threads=threads)
    return json.loads((run / "summary.json").read_text())


def ensure_eval(out: Path, trained: Path, *overrides: str, threads: int | None = None) -> dict:
    """``fsnas evaluate trained overrides --out out``, skipped if finished; a killed attempt is started again
    (an evaluation has no checkpoint: it is short and seeded)."""
    if not finished(out):
        if out.exists():
            shutil.rmtree(out)
        fsnas("evaluate", str(trained), *overrides, "--out", str(out), threads=threads)
    return json.loads((out / "summary.json").read_text())
