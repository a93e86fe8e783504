"""fsnas tune through a real local Ray: trials are ordinary run folders equal to the plain command's, a driver
killed with SIGKILL is resumed and every trial finishes with the uninterrupted results, bad input is refused
before Ray starts, and the results table / Pareto front / export pick what they say.  Every Ray process a test
starts is stopped by the test (each driver runs in its own session, which the test kills at the end)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nas import cli

from .conftest import cmdline, session_processes

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tune" / "tiny.yaml"


def finish(p: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out
    return out


def test_trials_are_plain_runs_and_a_killed_driver_resumes(drivers, tmp_path):
    steps = "train.steps=40"
    plain = tmp_path / "plain"
    finish(drivers("-q", "retrain", TINY, steps, "seed=1", "--out", plain))

    exp = tmp_path / "exp"
    out = finish(drivers("tune", TINY, steps, "--out", exp))
    assert out.count(" started (seed=") == 2 and out.count(" finished (seed=") == 2
    results = json.loads((exp / "results.json").read_text())
    trials = {t["values"]["seed"]: t for t in results["trials"]}
    assert sorted(trials) == [0, 1] and all(t["status"] == "finished" for t in trials.values())
    run = Path(trials[1]["run"])
    assert {"config.yaml", "metrics.jsonl", "model.pt", "genotype.yaml", "summary.json"} <= {f.name for f in run.iterdir()}
    reference = json.loads((plain / "summary.json").read_text())
    assert json.loads((run / "summary.json").read_text())["accuracy"] == reference["accuracy"]  # same run
    assert trials[1]["accuracy"] == reference["accuracy"] and trials[1]["latency_ms"] > 0
    retimed = json.loads((exp / "latency_retimed.json").read_text())  # timed again, one trial at a time
    assert sorted(retimed) == sorted(t["trial"] for t in trials.values())
    assert trials[1]["latency_ms"] == retimed[trials[1]["trial"]]["median_ms"] != trials[1]["latency_in_trial_ms"]
    assert "one trial at a time" in trials[1]["latency_source"]
    assert (exp / "results.md").is_file() and (exp / "pareto.png").stat().st_size > 0

    killed = tmp_path / "killed"
    driver = drivers("tune", TINY, steps, "--out", killed)
    deadline = time.time() + 180
    while not list(killed.glob("tune/*/checkpoint_*")) and time.time() < deadline:
        time.sleep(0.1)  # killed once a trial has reported a checkpoint, mid-run
    assert driver.poll() is None, "the experiment ended before it could be killed"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not (killed / "results.json").exists()
    for pid in session_processes(driver.pid):  # what a user does after a killed driver: stop Ray's processes
        os.kill(pid, signal.SIGKILL)
    finish(drivers("-q", "tune", "--resume", killed))
    resumed = {t["values"]["seed"]: t for t in json.loads((killed / "results.json").read_text())["trials"]}
    assert all(t["status"] == "finished" for t in resumed.values())
    assert {s: t["accuracy"] for s, t in resumed.items()} == {s: t["accuracy"] for s, t in trials.items()}


def test_a_killed_trial_worker_is_retried_from_its_checkpoint(drivers, tmp_path):
    """max_failures: a trial whose worker dies (SIGKILL, as an OOM kill or a lost node) restarts from its last
    checkpoint and ends with the accuracy of an uninterrupted run."""
    steps, seed = "train.steps=40", "tune.space={seed: {grid: [1]}}"
    plain = tmp_path / "plain"
    finish(drivers("-q", "retrain", TINY, steps, "seed=1", "--out", plain))
    exp = tmp_path / "exp"
    driver = drivers("tune", TINY, steps, seed, "tune.max_failures=1", "--out", exp)
    deadline, workers = time.time() + 180, []
    while not workers and time.time() < deadline:
        if list(exp.glob("tune/*/checkpoint_*")):  # mid-run: the trial has checkpointed at least once
            workers = [pid for pid in session_processes(driver.pid) if cmdline(pid).startswith(b"ray::ImplicitFunc")]
        time.sleep(0.1)
    assert workers and driver.poll() is None, "no running trial worker to kill"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    out = finish(driver)
    assert "failed; retrying from its last checkpoint" in out and " finished (seed=1)" in out
    [trial] = json.loads((exp / "results.json").read_text())["trials"]
    assert trial["status"] == "finished"
    assert trial["accuracy"] == json.loads((plain / "summary.json").read_text())["accuracy"]


def test_asha_stops_weak_trials_and_lets_one_finish(drivers, tmp_path):
    """One trial at a time, in grid order: the first validates on 2-way 5-shot tasks (chance 50%) and, alone at
    every rung, runs to its end; the second validates on 10-way 1-shot tasks (chance 10%), so its first report is
    below the first trial's at that rung, and ASHA stops it there."""
    exp = tmp_path / "asha"
    easy, hard = "[{n_way: 2, k_shot: 5, n_query: 5}]", "[{n_way: 10, k_shot: 1, n_query: 5}]"
    out = finish(drivers("tune", TINY, "train.steps=40", f"tune.space={{eval.tasks: {{grid: [{easy}, {hard}]}}}}",
                         "tune.max_concurrent=1", "tune.asha={enabled: true, grace_period: 1, reduction_factor: 2, "
                                                  "max_t: 8}", "--out", exp))
    trials = {t["values"]["eval.tasks"][0]["n_way"]: t
              for t in json.loads((exp / "results.json").read_text())["trials"]}
    vals = {n: sum('"phase": "val"' in line for line in (Path(t["run"]) / "metrics.jsonl").read_text().splitlines())
            for n, t in trials.items()}
    assert trials[2]["status"] == "finished" and vals[2] == 10  # every validation of 40 steps
    assert trials[10]["status"] == "stopped early (ASHA)" and vals[10] < vals[2]
    assert f"trial {trials[10]['trial']} stopped early (eval.tasks=" in out


def test_trial_state_lines_are_plain_stdout_lines_that_q_quiets(capsys):
    """The driver's Tune callback logs each state change; the CLI writes those lines to stdout as they are."""
    from types import SimpleNamespace
    from nas.tuning.callbacks import TrialLines
    trial = SimpleNamespace(trial_id="t_00001", config={"overrides": {"seed": 3}}, last_result={"fsnas_final": True})
    for quiet in (False, True):
        assert cli.main([*(["-q"] if quiet else []), "data", "list"]) == 0  # sets up the output as for any command
        capsys.readouterr()
        TrialLines().on_trial_complete(0, [], trial)
        TrialLines().on_trial_start(0, [], SimpleNamespace(trial_id="t_00002", config={}))
        captured = capsys.readouterr()
        assert captured.out == ("" if quiet else "trial t_00001 finished (seed=3)\ntrial t_00002 started\n")
        assert captured.err == ""


def test_bad_input_is_refused_before_ray_starts(tmp_path, capsys):
    def refused(*args, message):
        assert cli.main(["-q", "tune", *map(str, args)]) == 2
        assert message in capsys.readouterr().err
    out = tmp_path / "exp"
    refused(TINY, "tune.space={seed: {range: [0, 3]}}", "--out", out, message="tune.space.seed: give one of grid")
    refused(TINY, "tune.space={train.steps: {grid: [4, -1]}}", "--out", out,
            message="tune.space.train.steps: the value -1 does not fit the config")
    refused(TINY, "tune.space={train.options.lr: {loguniform: [0, 0.1]}}", "--out", out,
            message="give [low, high] with low < high > 0")
    refused(TINY, "tune.job=evaluate", "--out", out, message="tune.job: 'evaluate' is not a job")
    refused(TINY, message="give a config file and --out")
    refused("--resume", tmp_path, message="is not an fsnas tune experiment")
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused(TINY, "--out", out, message="already exists and is not empty")
    assert (out / "keep.txt").read_text() == "mine"


def test_results_table_pareto_front_and_export_pick(tmp_path, monkeypatch):
    from nas.checks import load_config
    from nas.tuning.results import write_results
    from nas.tuning.space import check_space
    exp = tmp_path / "exp"
    # four finished trials (accuracy, latency): b beats a; c is slower but more accurate; d is dominated by b
    for name, acc, ms in (("a", 0.60, 2.0), ("b", 0.70, 1.0), ("c", 0.80, 3.0), ("d", 0.65, 1.5)):
        run = exp / "runs" / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("{}")
        (run / "trial.json").write_text(json.dumps({"trial_id": name, "overrides": {"seed": ord(name)}, "job": "retrain"}))
        (run / "metrics.jsonl").write_text(json.dumps({"phase": "val", "step": 4, "accuracy": acc - 0.1}) + "\n")
        (run / "summary.json").write_text(json.dumps({"accuracy": acc, "ci95": 0.01, "parameters": 100,
                                                      "tune_latency": {"median_ms": ms, "device": "cpu"}}))
    run = exp / "runs" / "e"  # stopped by ASHA: no summary
    run.mkdir()
    (run / "config.yaml").write_text("{}")
    (run / "trial.json").write_text(json.dumps({"trial_id": "e", "overrides": {"seed": 5}, "job": "retrain"}))
    cfg = load_config(TINY, ["tune.asha.enabled=true"])
    report = write_results(exp, cfg, check_space(cfg), {}, 1.0)
    assert [t["trial"] for t in report["trials"]] == ["c", "b", "d", "a", "e"]
    assert report["trials"][-1]["status"] == "stopped early (ASHA)"
    assert report["pareto"] == ["b", "c"]  # fastest first
    assert report["trials"][0]["val_accuracy"] == pytest.approx(0.7)
    assert "| c | 99 | finished | 80.00 ± 1.00 |" in (exp / "results.md").read_text()
    # latencies timed again after the trials replace the in-trial ones: a alone at 0.5 ms joins the front
    (exp / "latency_retimed.json").write_text(json.dumps({"a": {"median_ms": 0.5, "batch": 1, "device": "cpu"}}))
    again = write_results(exp, cfg, check_space(cfg), {}, 1.0)
    assert again["pareto"] == ["a", "b", "c"]
    a = next(t for t in again["trials"] if t["trial"] == "a")
    assert a["latency_in_trial_ms"] == 2.0 and "one trial at a time" in a["latency_source"]
    off = load_config(TINY, ["tune.asha.enabled=true", "tune.retime_latency=false"])  # the old file is not used
    assert write_results(exp, off, check_space(off), {}, 1.0)["pareto"] == ["b", "c"]
    (exp / "latency_retimed.json").unlink()
    write_results(exp, cfg, check_space(cfg), {}, 1.0)

    from nas.export.job import from_experiment
    (exp / "tune").mkdir()
    calls = []
    import nas.export.job as job

    def fake_retrain_run(run, overrides):
        calls.append(run.name)
        from types import SimpleNamespace
        return [SimpleNamespace(rank=0, provenance={})]
    monkeypatch.setattr(job, "from_retrain_run", fake_retrain_run)
    for name in ("b", "c"):
        (exp / "runs" / name / "model.pt").write_bytes(b"")
    items = from_experiment(exp, "pareto:2", [])
    assert calls == ["b", "c"] and [i.rank for i in items] == [1, 2]
    assert items[0].provenance["tune_trial"]["trial"] == "b"
    calls.clear()
    (exp / "runs" / "a" / "model.pt").write_bytes(b"")
    (exp / "runs" / "d" / "model.pt").write_bytes(b"")
    from_experiment(exp, "top:2", [])
    assert calls == ["c", "b"]


def test_a_trial_timed_on_another_kind_of_machine_is_not_timed_again_here():
    from nas.latency.fingerprint import device_fingerprint
    from nas.tuning.retime import retime
    from search_spaces.genotypes import FixedGenotype
    genotype = FixedGenotype("conv4", {"hidden": 8})
    here = device_fingerprint("cpu", "float32", 1, 1, channels_last=True)
    summary = {"input": {"shape": [1, 28, 28]},
               "tune_latency": {"median_ms": 9.0, "device": "cpu", "threads": 1, "fingerprint": here}}
    again = retime(summary, genotype)
    assert again["batch"] == 1 and again["threads"] == 1 and again["median_ms"] > 0
    elsewhere = dict(summary, tune_latency=dict(summary["tune_latency"], fingerprint={**here, "device": "other CPU"}))
    assert retime(elsewhere, genotype) is None  # a cluster node's CPU is not this one: its own figure stays
