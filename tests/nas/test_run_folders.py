"""A run folder has one writer: an fcntl lock held by the process writing it (a new run or --resume); a second
process is refused with the holder's PID and changes nothing; a killed holder leaves no stale lock."""

import os
import signal
import subprocess
import sys

import pytest
import yaml

from nas.checks import load_config
from nas.errors import UserError
from nas.runs import LOCK_FILE, RunDir, RunInUse

from ..conftest import REPO, kill_after_first_checkpoint
from .test_cli import fsnas, tiny_config  # noqa: F401  (tiny_config is a fixture)
from .test_search import SEARCH


def hold_lock(folder):
    """Another process that takes the folder's lock (as a running fsnas command does) and waits."""
    code = ("import sys, time; from nas.runs import RunDir; r = RunDir(sys.argv[1]); r.lock(); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_resume_of_a_run_another_process_writes_is_refused_and_a_killed_holder_leaves_no_lock(tiny_config, tmp_path,
                                                                                               capsys):
    overrides = ["train.steps=60", "train.checkpoint_every=10", "train.log_every=10", "train.val_every=0"]
    run = tmp_path / "run"
    kill_after_first_checkpoint(["retrain", str(tiny_config), *overrides, "--no-eval", "--out", str(run)],
                                run / "checkpoints" / "last.pt")
    holder = hold_lock(run)
    try:
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != LOCK_FILE}
        assert fsnas("retrain", "--resume", run, "--no-eval") == 2
        assert f"{run} is in use by process {holder.pid}" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != LOCK_FILE} == before
        assert fsnas("retrain", tiny_config, "--out", run) == 2  # and a new run may not take it over
        assert "already exists and is not empty" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert fsnas("retrain", "--resume", run, "--no-eval") == 0  # the kernel dropped the killed holder's lock
    steps = [r["step"] for r in RunDir(run).read_metrics() if r["phase"] == "train"]
    assert steps == list(range(10, 61, 10))


def test_a_new_run_folder_is_created_under_the_lock(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    empty = tmp_path / "empty"
    empty.mkdir()
    holder = hold_lock(empty)  # another process got there first, between the emptiness check and the config
    try:
        with pytest.raises(RunInUse, match=f"in use by process {holder.pid}"):
            RunDir.create(cfg, empty)
        assert [p.name for p in empty.iterdir()] == [LOCK_FILE]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run = RunDir.create(cfg, empty)
    assert run.config_path.is_file()
    again = RunDir.resume(empty)  # the same process may open its own run again
    assert again.path == run.path


def test_out_that_is_a_file_or_cannot_be_made_is_refused(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    with pytest.raises(UserError, match="is a file, not a folder"):
        RunDir.create(cfg, a_file)
    assert a_file.read_text() == "keep me"
    with pytest.raises(UserError, match="cannot be created"):
        RunDir.create(cfg, a_file / "inside")


def test_evaluate_leaves_no_folder_for_a_search_run_or_refused_weights(tiny_config, tmp_path, capsys):
    search_config = tmp_path / "search.yaml"
    search_config.write_text(yaml.safe_dump({**SEARCH, "search": {**SEARCH["search"], "steps": 4}}))
    search = tmp_path / "search"
    assert fsnas("search", search_config, "--out", search) == 0
    before = sorted(p.name for p in search.iterdir())
    assert fsnas("evaluate", search, "--out", tmp_path / "ev1") == 2
    assert "is a search run" in capsys.readouterr().err
    assert not (tmp_path / "ev1").exists() and sorted(p.name for p in search.iterdir()) == before

    run = tmp_path / "run"
    assert fsnas("retrain", tiny_config, "--no-eval", "--out", run) == 0
    (run / "model.pt").write_bytes(b"\x80\x04not a state dict")  # a damaged or malicious file
    assert fsnas("evaluate", run, "--out", tmp_path / "ev2") == 2
    assert "never unpickled" in capsys.readouterr().err and not (tmp_path / "ev2").exists()
