"""fsnas tune under faults: trial resources no node has end the job within a bounded time (a local Ray at
once, a cluster after tune.wait_for_nodes_s), an address nobody answers is refused in seconds, a running
experiment's folder is locked, and a diverged trial ends (not retried) and is reported as diverged."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nas import cli
from nas.errors import UserError
from nas.tuning.cluster import check_address, fits, wait_until_trials_fit

from .conftest import ENV, REPO

TINY = REPO / "configs" / "tune" / "tiny.yaml"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_a_trial_must_fit_on_one_node():
    two_nodes = [{"CPU": 8, "GPU": 0}, {"CPU": 1, "GPU": 1}]
    assert fits(two_nodes, 1, 1) and fits(two_nodes, 8, 0)
    assert not fits(two_nodes, 2, 1)  # 9 CPUs and a GPU in the cluster, but not on one node
    assert not fits([], 1, 0)


def test_waiting_for_nodes_is_bounded_and_ends_when_one_joins():
    clock = FakeClock()
    with pytest.raises(UserError, match=r"asks for cpu 1 gpu 2 on one node, but the Ray cluster has 1 node "
                                        r"\(cpu 2 gpu 0\); no trial was started") as refused:
        wait_until_trials_fit(1, 2, 0.0, nodes=lambda: [{"CPU": 2, "GPU": 0}], clock=clock, sleep=clock.sleep)
    assert "waiting" not in str(refused.value) and clock.now == 0.0  # a local Ray: looked once

    with pytest.raises(UserError, match=r"after waiting 30 s for nodes to join \(tune.wait_for_nodes_s\)"):
        wait_until_trials_fit(1, 2, 30.0, nodes=lambda: [], clock=clock, sleep=clock.sleep)
    assert clock.now == 30.0

    clock.now, polls = 0.0, []

    def joining():  # a GPU node joins at the third look
        polls.append(clock.now)
        return [{"CPU": 2, "GPU": 0}] + ([{"CPU": 4, "GPU": 2}] if len(polls) >= 3 else [])
    wait_until_trials_fit(1, 2, 30.0, nodes=joining, clock=clock, sleep=clock.sleep)
    assert len(polls) == 3 and clock.now < 30.0


def test_an_address_nobody_answers_is_refused_in_seconds():
    import socket
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(UserError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        check_address(f"127.0.0.1:{port}", timeout_s=2.0)
    assert time.monotonic() - t0 < 5
    with pytest.raises(UserError, match="is not host:port"):
        check_address("head-node")
    check_address(None)
    check_address("auto")


def test_absent_gpus_end_the_job_with_one_message_and_no_experiment_folder(drivers, tmp_path):
    out = tmp_path / "exp"
    t0 = time.monotonic()
    p = drivers("-q", "tune", TINY, "tune.resources.gpu=2", "--out", out)
    text, _ = p.communicate(timeout=120)
    assert p.returncode == 2, text
    assert time.monotonic() - t0 < 120
    assert "a trial asks for cpu 1 gpu 2 on one node, but the Ray cluster has 1 node" in text
    assert "Traceback" not in text
    assert not out.exists()  # refused before the experiment folder was made


def test_a_running_experiment_is_locked(tmp_path, capsys):
    exp = tmp_path / "exp"
    (exp / "tune").mkdir(parents=True)
    (exp / "config.yaml").write_text(TINY.read_text())
    code = ("import sys, time; from nas.folder_lock import FolderLock; l = FolderLock(sys.argv[1]); l.acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(exp)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.main(["-q", "tune", "--resume", str(exp)]) == 2
        assert f"is in use by process {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_a_diverged_trial_ends_without_a_retry_and_is_reported_as_diverged(tmp_path, monkeypatch):
    """run_trial with Tune's session faked: the trial returns (a raised error is what Tune retries) and
    trial.json holds the divergence, which the results table reports."""
    from ray import tune

    from nas.tuning.results import trial_rows
    from nas.tuning.trial import run_trial
    base = yaml.safe_load(TINY.read_text())
    base.pop("tune")
    base["data"]["root"] = None
    base["train"].update(steps=40, checkpoint_every=4, val_every=0)
    base["train"]["options"].update(lr_step=4, lr_gamma=1.0e6)
    reports = []
    monkeypatch.setattr(tune, "get_context", lambda: type("C", (), {"get_trial_id": lambda self: "t_0"})())
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    spec = {"base": base, "job": "retrain", "experiment": str(tmp_path), "threads": 1}
    run_trial({"overrides": {"seed": 0}}, spec)
    trial = json.loads((tmp_path / "runs" / "t_0" / "trial.json").read_text())
    assert "the loss became" in trial["diverged"] or "non-finite" in trial["diverged"]
    assert not any(r.get("fsnas_final") for r in reports)
    (failed := tmp_path / "runs" / "t_1").mkdir()
    (failed / "trial.json").write_text(json.dumps({"trial_id": "t_1", "overrides": {}}))
    status = {r["trial"]: r["status"] for r in trial_rows(tmp_path, {"t_1": "RuntimeError: out of memory"}, False)}
    assert status == {"t_0": f"diverged: {trial['diverged']}", "t_1": "failed: RuntimeError: out of memory"}
