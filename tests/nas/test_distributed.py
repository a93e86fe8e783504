"""One retrain on two Ray Train workers (distributed.workers): each step's episodes shared, gradients averaged,
so 2 workers of meta-batch 1 train as one process of meta-batch 2; a killed driver's run resumes to the same
end; what cannot run on several workers yet is refused with one message."""

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
from search_spaces import create_model

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


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    for name, workers, batch in (("one", 1, 2), ("two", 2, 1)):
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
    ({"workers": 2}, {"search": {"enabled": True}}, "a search does not run on several workers"),
])
def test_what_cannot_run_on_workers_is_refused(tmp_path, distributed, extra, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**TINY, **extra, "distributed": distributed}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_search_on_workers_gets_one_message_and_no_folder(tmp_path, capsys):
    from .test_search import SEARCH
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, "distributed": {"workers": 2}}))
    assert cli.main(["-q", "search", str(path), "--out", str(tmp_path / "never")]) == 2
    assert "a search does not run on several workers yet" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_workers_the_cluster_cannot_hold_are_refused_before_ray_train_waits_for_them():
    check_cluster_fits(2, 1.0, 0.0, {"CPU": 2.0})
    with pytest.raises(UserError, match=r"need CPU 4 \(the cluster has 2\)"):
        check_cluster_fits(2, 2.0, 0.0, {"CPU": 2.0})
    with pytest.raises(UserError, match=r"GPU 2 \(the cluster has 0\)"):
        check_cluster_fits(2, 1.0, 1.0, {"CPU": 8.0})
