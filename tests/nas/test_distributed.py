"""One retrain on two Ray Train workers (distributed.workers): each step's episodes shared, gradients averaged,
so 2 workers of meta-batch 1 train as one process of meta-batch 2; a killed driver's run resumes to the same
end; a search on two workers chooses what one process of twice the meta-batch chooses; what cannot run on
several workers yet is refused with one message."""

import contextlib
import json
import os
import signal

import pytest
import torch
import yaml
from torch import nn

from nas import cli
from nas.checks import load_config
from nas.distributed import PROCESSES_FILE, check_cluster_fits
from nas.errors import ConfigError, UserError
from search_spaces import create_model, create_supernet

from ..conftest import kill_after_first_checkpoint
from .test_cli import TINY

STEPS = 8


def config(tmp_path, name: str, workers: int, meta_batch: int, **train) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "steps": STEPS, "val_every": 0,
                                                      "meta_batch": meta_batch, **train},
                                    "distributed": {"workers": workers}}))
    return str(path)


def train_losses(run) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("phase") == "train"]


def learned(run) -> dict:
    """The learned weights, less the conv biases that BatchNorm cancels: their gradient is rounding noise,
    which Adam scales up to full steps in any two runs that round differently."""
    net = create_model("conv4", in_channels=1, hidden=16)
    cancelled = {f"{n}.bias" for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    state = torch.load(run / "model.pt", weights_only=True)
    return {k: v for k, v in state.items() if torch.is_floating_point(v) and k not in cancelled
            and "running_" not in k}


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    for name, workers, batch in (("one", 1, 2), ("two", 2, 1)):
        with one_thread():  # as each worker runs (cpus_per_worker 1): the same rounding
            assert cli.main(["-q", "retrain", config(tmp, name, workers, batch), "--out", str(tmp / name)]) == 0
    return tmp


def test_two_workers_of_one_episode_train_as_one_process_of_two(runs):
    one, two = runs / "one", runs / "two"
    assert train_losses(two) == pytest.approx(train_losses(one), rel=1e-5)
    a, b = learned(one), learned(two)
    assert a.keys() == b.keys() and len(a) > 4
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["train"]["steps"] == STEPS and len(summary["results"]) == 2  # worker 0 evaluated
    assert json.loads((two / PROCESSES_FILE).read_text())["driver"] > 0


def test_a_killed_two_worker_run_resumes_to_the_unbroken_end(runs, tmp_path):
    out = tmp_path / "killed"
    cfg = config(tmp_path, "two", 2, 1, checkpoint_every=4)
    kill_after_first_checkpoint(["retrain", cfg, "--out", str(out)], out / "checkpoints" / "last.pt", timeout=300)
    assert (out / "checkpoints" / "last.pt").exists() and not (out / "summary.json").exists()
    for pid in json.loads((out / PROCESSES_FILE).read_text())["ray"]:  # the killed driver's Ray, by id
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert cli.main(["-q", "retrain", "--resume", str(out)]) == 0
    assert train_losses(out) == pytest.approx(train_losses(runs / "two"), rel=1e-5)
    a, b = learned(runs / "two"), learned(out)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("distributed, extra, message", [
    ({"workers": 0}, {}, "distributed.workers: must be at least 1"),
    ({"workers": 2, "backend": "nccl"}, {}, "nccl runs on GPUs only"),
    ({"workers": 2, "backend": "mpi"}, {}, "'mpi' is not a backend"),
    ({"workers": 2}, {"train": {**TINY["train"], "hard_tasks": 2}}, "hard tasks .* does not run on several"),
    ({"workers": 2}, {"train": {**TINY["train"], "steps": 0}}, "a run without meta-training steps"),
])
def test_what_cannot_run_on_workers_is_refused(tmp_path, distributed, extra, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**TINY, **extra, "distributed": distributed}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def search_config(tmp_path, name: str, workers: int, meta_batch: int) -> str:
    from .test_elastic_search import ELASTIC
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**ELASTIC, "search": {**ELASTIC["search"], "meta_batch": meta_batch},
                                    "distributed": {"workers": workers}}))
    return str(path)


def search_weights(run) -> dict:
    """The search checkpoint's learned supernet weights, less the conv biases that BatchNorm cancels (see learned)."""
    from .test_elastic_search import OPTIONS
    cancelled = {f"{n}.bias" for n, m in create_supernet("elastic", 1, **OPTIONS).named_modules()
                 if isinstance(m, nn.Conv2d)}
    state = torch.load(run / "checkpoints" / "search.pt", weights_only=True)["supernet"]
    return {k: v for k, v in state.items() if "running_" not in k and v.is_floating_point() and k not in cancelled}


@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    for name, workers, batch in (("one", 1, 2), ("two", 2, 1)):
        with one_thread():  # as each worker runs (cpus_per_worker 1): the same rounding
            assert cli.main(["-q", "search", search_config(tmp, name, workers, batch), "--out", str(tmp / name)]) == 0
    return tmp


def test_a_search_on_two_workers_chooses_as_one_process_of_twice_the_meta_batch(searches):
    one, two = searches / "one", searches / "two"
    assert (two / "genotype.yaml").read_text() == (one / "genotype.yaml").read_text()
    rows = [[json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()] for run in (one, two)]
    losses = [[r["loss"] for r in rs if r["phase"] == "search"] for rs in rows]
    assert len(losses[1]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-5)  # worker 0 logged, once
    assert [r["generation"] for r in rows[1] if r["phase"] == "evolution"] == [1, 2]  # worker 0 evolved
    summary = json.loads((two / "summary.json").read_text())
    assert summary["command"] == "search" and summary["genotype"] == json.loads(
        (one / "summary.json").read_text())["genotype"]
    a, b = search_weights(one), search_weights(two)
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)


def test_a_killed_two_worker_search_resumes_to_the_unbroken_end(searches, tmp_path):
    out = tmp_path / "killed"
    kill_after_first_checkpoint(["search", search_config(tmp_path, "two", 2, 1), "--out", str(out)],
                                out / "checkpoints" / "search.pt", timeout=300)
    step = torch.load(out / "checkpoints" / "search.pt", weights_only=True)["step"]
    assert step < 8 and not (out / "summary.json").exists(), "the search finished before it could be killed"
    for pid in json.loads((out / PROCESSES_FILE).read_text())["ray"]:  # the killed driver's Ray, by id
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert cli.main(["-q", "search", "--resume", str(out)]) == 0
    assert (out / "genotype.yaml").read_text() == (searches / "two" / "genotype.yaml").read_text()
    a, b = search_weights(searches / "two"), search_weights(out)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def test_run_searches_then_retrains_what_it_found_on_two_workers(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["-q", "run", search_config(tmp_path, "run", 2, 1), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "run" and summary["search"]["genotype"] == summary["model"]  # what it found
    assert summary["train"]["steps"] == 10 and len(summary["results"]) == 1  # worker 0 retrained and evaluated
    assert yaml.safe_load((out / "genotype.yaml").read_text())["space"] == "elastic"


def test_a_retrain_without_steps_on_workers_gets_one_message_and_no_folder(tmp_path, capsys):
    from .test_search import SEARCH
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, "train": {**SEARCH["train"], "steps": 0},
                                    "distributed": {"workers": 2}}))
    assert cli.main(["-q", "run", str(path), "--out", str(tmp_path / "never")]) == 2
    assert "a run without meta-training steps does not run on several workers yet" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_workers_the_cluster_cannot_hold_are_refused_before_ray_train_waits_for_them():
    check_cluster_fits(2, 1.0, 0.0, {"CPU": 2.0})
    with pytest.raises(UserError, match=r"need CPU 4 \(the cluster has 2\)"):
        check_cluster_fits(2, 2.0, 0.0, {"CPU": 2.0})
    with pytest.raises(UserError, match=r"GPU 2 \(the cluster has 0\)"):
        check_cluster_fits(2, 1.0, 1.0, {"CPU": 8.0})
