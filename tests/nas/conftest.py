"""Fixtures of the nas tests: fsnas drivers started in their own session, every process of which (Ray's
included) is killed at teardown."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def session_processes(sid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(d.name))
    return pids


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


@pytest.fixture
def drivers():
    """Start fsnas in its own session; at teardown every process of those sessions (Ray's included) is killed."""
    started = []

    def start(*args: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "nas.cli", *map(str, args)], cwd=REPO, env=ENV,
                             start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(p.pid)
        return p
    yield start
    for sid in started:
        for _ in range(50):  # bounded: Ray's processes go within a few seconds of a kill
            left = session_processes(sid)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        assert not session_processes(sid), "Ray processes left behind"


