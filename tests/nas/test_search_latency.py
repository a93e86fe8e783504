"""Latency in the search: the DARTS loss forms, their gradients (first and second order), the SPOS
constraint, the final report, and the errors for tables and targets that cannot work."""

import json
import re

import pytest
import torch
import yaml

from nas import cli
from nas.runs import RunDir
from nas.latency import LatencyPredictor, build_table
from nas.search.latency import LatencyObjective
from nas.search.strategies import DartsStrategy
from search_spaces import DartsSupernet

from .test_search import SEARCH, episodes  # noqa: F401  (fixture)

SPACE = SEARCH["search"]["space_options"]


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("latency") / "table.json"
    build_table("darts", SPACE, (1, 28, 28), warmup=0, repeats=3, progress=False).save(path)
    return path


def supernet():
    torch.manual_seed(0)
    return DartsSupernet(in_channels=1, **SPACE)


def predictor(table_file, net):
    from nas.latency import LatencyTable
    return LatencyPredictor(LatencyTable.load(table_file), net)


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
def test_forms_equal_cross_entropy_at_the_target_and_penalise_above_it(table_file, form):
    net = supernet()
    pred = predictor(table_file, net)
    lat = pred.expected().item()
    ce = torch.tensor(1.3)
    at_target, _ = LatencyObjective(pred, lat, form)(ce)
    assert at_target.item() == pytest.approx(1.3, rel=1e-6)
    over, _ = LatencyObjective(pred, lat / 2, form)(ce)  # the supernet is slower than this target
    assert over.item() > 1.3


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
def test_second_order_gradient_correction_equals_autograd_of_the_whole_loss(table_file, form):
    net = supernet()
    obj = LatencyObjective(predictor(table_file, net), 0.5 * predictor(table_file, net).expected().item(), form,
                           beta=0.8, lam=0.3)
    alphas = net.arch_parameters()

    def ce():  # any cross-entropy-like function of alpha
        return sum((a.sin() ** 2).sum() for a in alphas)
    loss, _ = obj(ce())
    direct = torch.autograd.grad(loss, alphas)
    value = ce()
    for a, g in zip(alphas, torch.autograd.grad(value, alphas)):
        a.grad = g.clone()
    obj.add_to_grads(alphas, value.item())
    for a, d in zip(alphas, direct):
        torch.testing.assert_close(a.grad, d, rtol=1e-5, atol=1e-8)


def test_latency_loss_lowers_the_expected_latency(table_file, episodes):  # noqa: F811
    train, val = episodes
    ends = []
    for with_latency in (False, True):
        net = supernet()
        pred = predictor(table_file, net)
        start = pred.expected().item()
        objective = LatencyObjective(pred, 0.5 * start, "additive", lam=50.0) if with_latency else None
        strategy = DartsStrategy(net, steps=10, latency=objective, arch_lr=0.05)
        for i in range(10):
            out = strategy.step(train.episode(i), val.episode(i))
        assert ("latency_ms" in out) == with_latency
        ends.append(pred.expected().item())
    assert ends[1] < ends[0] and ends[1] < start


def _config(tmp_path, **latency):
    data = json.loads(json.dumps(SEARCH))
    data["search"].update(sampler="spos", sampler_options={}, latency=latency)
    p = tmp_path / "search.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_spos_meets_a_latency_target_and_reports_the_measured_latency(table_file, tmp_path):
    from nas.latency import LatencyTable
    net = supernet()
    pred = LatencyPredictor(LatencyTable.load(table_file), net)
    gen = torch.Generator().manual_seed(0)
    lats = sorted(pred.predict(net.sample_path(gen)) for _ in range(40))
    target = lats[len(lats) // 2]  # about half the space is feasible
    out = tmp_path / "run"
    assert cli.main(["-q", "search", str(_config(tmp_path, table=str(table_file), target_ms=target)),
                     "--out", str(out)]) == 0
    cands = json.loads((out / "candidates.json").read_text())
    assert cands and all(c["predicted_latency_ms"] <= target for c in cands)
    lat = json.loads((out / "summary.json").read_text())["latency"]
    assert lat["target_ms"] == target and lat["predicted_ms"] == cands[0]["predicted_latency_ms"]
    assert lat["measured_ms"] > 0 and lat["measured"]["count"] == 3
    assert lat["meets_target"] is (lat["measured_ms"] <= target)  # the measured time, not the predicted one


def test_evolution_in_a_trained_supernet_equals_the_original_and_takes_new_targets(table_file, tmp_path, capsys):
    """search.supernet: the evolution alone, in another run's trained supernet — with the same target it
    finds the same candidates as that run; with a tighter one, candidates under it."""
    first = tmp_path / "first"
    cands = lambda run: json.loads((run / "candidates.json").read_text())  # noqa: E731
    assert cli.main(["-q", "search", str(_config(tmp_path, table=str(table_file), target_ms=1e6)),
                     "--out", str(first)]) == 0
    again = tmp_path / "again"
    assert cli.main(["-q", "search", str(_config(tmp_path, table=str(table_file), target_ms=1e6)),
                     f"search.supernet={first}", "--out", str(again)]) == 0
    assert cands(again) == cands(first)
    assert not [r for r in RunDir(again).read_metrics() if r["phase"] == "search"]  # no supernet training
    assert json.loads((again / "summary.json").read_text())["supernet_from"] == str(first.resolve())
    tight = min(c["predicted_latency_ms"] for c in cands(first))
    lower = tmp_path / "lower"
    assert cli.main(["-q", "search", str(_config(tmp_path, table=str(table_file), target_ms=tight)),
                     f"search.supernet={first}", "--out", str(lower)]) == 0
    assert all(c["predicted_latency_ms"] <= tight for c in cands(lower))
    capsys.readouterr()
    for override, message in ((f"search.sampler=darts", "only the progressive or sandwich or spos sampler"),
                              (f"search.space_options.channels=6", "the supernet must be of the same space"),
                              ):
        assert cli.main(["-q", "search", str(_config(tmp_path, table=str(table_file))), f"search.supernet={first}",
                         override, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["-q", "search", str(_config(tmp_path)), f"search.supernet={tmp_path}",
                     "--out", str(tmp_path / "bad")]) == 2
    assert "is not a search run with a trained supernet" in capsys.readouterr().err
    state = torch.load(first / "checkpoints" / "search.pt", weights_only=True)
    torch.save({**state, "step": 4}, first / "checkpoints" / "search.pt")  # as if killed at step 4 of 12
    assert cli.main(["-q", "search", str(_config(tmp_path)), f"search.supernet={first}",
                     "--out", str(tmp_path / "bad")]) == 2
    assert "has trained its supernet for 4 of 12 steps" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_latency_inputs_that_cannot_work_exit_2_before_any_run_folder(table_file, tmp_path, capsys):
    cases = [({"target_ms": 1.0}, "target_ms needs search.latency.table"),
             ({"table": str(tmp_path / "none.json")}, "does not exist; build it"),
             ({"table": str(table_file), "target_ms": 1e-6}, "none of .* random architectures .*target_ms"),
             ({"table": str(table_file), "form": "cubic"}, "is not a form")]
    for latency, message in cases:
        out = tmp_path / "never"
        assert cli.main(["-q", "search", str(_config(tmp_path, **latency)), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
        assert not out.exists()
    other = tmp_path / "other.json"
    t = json.loads(table_file.read_text())
    t["fingerprint"]["device"] = "some other CPU"
    other.write_text(json.dumps(t))
    assert cli.main(["-q", "search", str(_config(tmp_path, table=str(other))), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "another setup (device:" in err and not (tmp_path / "o").exists()
    assert "set search.latency.force=true to use it anyway" in err and "--force" not in err  # what search takes
