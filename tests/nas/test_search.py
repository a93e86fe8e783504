"""fsnas search: strategies, evolution, the search loop, resume after SIGKILL."""

import json

import pytest
import torch
import yaml

from meta.data import load_dataset
from meta.episodes import EpisodeSampler
from nas import cli
from nas.search.evolution import SearchError, crossover, evolve, mutate, recalibrate_bn
from nas.search.strategies import DartsStrategy, GdasStrategy, cap_skips
from search_spaces import DartsGenotype, DartsSupernet, load_genotype

from ..conftest import kill_after_first_checkpoint

SEARCH = {
    "name": "stiny", "seed": 0, "device": "cpu",
    "data": {"dataset": "synthetic", "options": {"train_classes": 40, "val_classes": 10, "test_classes": 10,
                                                 "images_per_class": 20}},
    "model": {"name": "conv4", "options": {"hidden": 16}},
    "train": {"steps": 10, "log_every": 5, "checkpoint_every": 5, "episode": {"n_way": 5, "k_shot": 1, "n_query": 5}},
    "eval": {"episodes": 10},
    "search": {"enabled": True, "space": "darts", "space_options": {"channels": 4, "cells": 3, "nodes": 2},
               "sampler": "darts", "steps": 12, "log_every": 4, "checkpoint_every": 4,
               "evolution": {"population": 4, "generations": 2, "top_k": 2, "eval_episodes": 4, "bn_batches": 2}},
}


@pytest.fixture
def search_config(tmp_path):
    p = tmp_path / "search.yaml"
    p.write_text(yaml.safe_dump(SEARCH))
    return p


@pytest.fixture(scope="module")
def episodes():
    ds = load_dataset("synthetic", train_classes=20, val_classes=10, test_classes=5, images_per_class=12)
    return (EpisodeSampler(ds, "train", 5, 1, 3, seed=0), EpisodeSampler(ds, "val", 5, 1, 3, seed=1))


def tiny(**kw):
    torch.manual_seed(0)
    return DartsSupernet(in_channels=1, channels=4, cells=3, nodes=2, **kw)


def test_darts_step_moves_alpha_on_val_and_weights_on_train(episodes):
    train, val = episodes
    net = tiny()
    sampler = DartsStrategy(net, steps=5, arch_lr=0.01)
    alpha0 = net.alpha_normal.detach().clone()
    w0 = net.stem[0].weight.detach().clone()
    m = sampler.step(train.episode(0), val.episode(0))
    assert set(m) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert not torch.equal(alpha0, net.alpha_normal) and not torch.equal(w0, net.stem[0].weight)


def arch_grad(order: str, w_lr: float, episodes) -> torch.Tensor:
    train, val = episodes
    net = tiny()
    sampler = DartsStrategy(net, steps=5, order=order, w_lr=w_lr)
    net.train()
    sampler.a_opt.zero_grad()
    if order == "second":
        sampler._unrolled_arch_grad(train.episode(0), val.episode(0))
    else:
        sampler._loss(val.episode(0))[0].backward()
    return net.alpha_normal.grad.clone()


def test_second_order_with_zero_step_equals_first_order(episodes):
    """With xi = 0 the unrolled architecture gradient reduces to the first-order one."""
    assert torch.allclose(arch_grad("first", 0.0, episodes), arch_grad("second", 0.0, episodes), atol=1e-6)


def test_second_order_differs_from_first_with_a_real_step(episodes):
    first, second = arch_grad("first", 0.5, episodes), arch_grad("second", 0.5, episodes)
    assert torch.isfinite(second).all() and not torch.allclose(first, second)


def test_gdas_anneals_and_runs_one_op_per_edge(episodes):
    train, val = episodes
    net = tiny(weighting="gumbel")
    sampler = GdasStrategy(net, steps=3, tau_max=10.0, tau_min=0.1)
    taus = [sampler.step(train.episode(i), val.episode(i))["tau"] for i in range(3)]
    assert taus[0] == pytest.approx(10.0) and taus[-1] == pytest.approx(0.1) and taus[0] > taus[1] > taus[2]
    with pytest.raises(ValueError, match="gumbel"):
        GdasStrategy(tiny(), steps=3)


def test_skip_cap():
    net = DartsSupernet(in_channels=1, channels=4, cells=3, nodes=3)
    with torch.no_grad():
        net.alpha_normal.zero_()
        net.alpha_normal[:, net.op_index["skip_connect"]] = 5.0  # a collapsed cell: all skips
        net.alpha_normal[:, net.op_index["sep_conv_3x3"]] = 1.0
    g = cap_skips(net.derive(), net, max_skip=2)
    ops = [op for node in g.normal.nodes for op, _ in node]
    assert ops.count("skip_connect") == 2 and ops.count("sep_conv_3x3") == len(ops) - 2


def test_bn_recalibration_uses_the_given_batches():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3))
    x = torch.randn(8, 1, 5, 5) * 3 + 2
    recalibrate_bn(net, [x, x])
    expected = net[0](x).mean((0, 2, 3))
    assert torch.allclose(net[1].running_mean, expected, atol=1e-5) and not net.training


def test_mutation_and_crossover_stay_in_the_space():
    net = DartsSupernet(in_channels=1, channels=4, cells=3, nodes=3)
    gen = torch.Generator().manual_seed(0)
    a, b = net.sample_path(gen), net.sample_path(gen)
    for _ in range(20):
        child = crossover(a, b, gen)
        assert all(nc in (na, nb) for nc, na, nb in zip(child.normal.nodes, a.normal.nodes, b.normal.nodes))
        m = mutate(a, net, 0.5, gen)
        net(torch.randn(2, 1, 28, 28), path=m)  # valid in the supernet
    assert mutate(a, net, 0.0, gen) == a


def test_evolution_ranks_and_respects_constraints(episodes):
    train, val = episodes
    net = tiny()
    cands = evolve(net, train, val, population=4, generations=2, top_k=2, eval_episodes=3, bn_batches=1,
                   input_size=(1, 28, 28), max_params=3000, progress=False)
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True) and len(cands) >= 4
    assert all(c.params <= 3000 for c in cands)
    with pytest.raises(SearchError, match="in a row"):
        evolve(net, train, val, population=2, generations=1, eval_episodes=1, bn_batches=1, input_size=(1, 28, 28),
               max_params=10, max_tries=20, progress=False)


@pytest.mark.parametrize("sampler, extra", [("darts", []), ("spos", ["search.sampler_options={}"])])
def test_search_writes_its_run_folder(search_config, tmp_path, sampler, extra):
    out = tmp_path / sampler
    assert cli.main(["-q", "search", str(search_config), f"search.sampler={sampler}", *extra, "--out", str(out)]) == 0
    g = load_genotype(out / "genotype.yaml")
    assert isinstance(g, DartsGenotype) and g.channels == 4
    table = json.loads((out / "candidates.json").read_text())
    assert table[0]["rank"] == 1 and table[0]["params"] == g.params((1, 28, 28))
    assert (out / "cells" / "genotype_normal.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "search" and summary["genotype"] == g.to_dict()
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    if sampler == "darts":
        assert (out / "alpha_history.png").exists()
        assert all("alpha_entropy" in r and "skip_share" in r for r in records if r["phase"] == "search")
    else:
        assert [r["generation"] for r in records if r["phase"] == "evolution"] == [1, 2]


def test_run_searches_then_retrains(search_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["-q", "run", str(search_config), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["search"]["genotype"] == summary["model"]  # the retrained backbone is the one found
    assert "accuracy" in summary and "synthetic test 5-way 1-shot" in capsys.readouterr().out


def test_bad_search_configs(search_config, capsys):
    for override, message in [("search.sampler=bayes", "search.sampler: unknown name 'bayes'"),
                              ("search.space_options.colour=1", "search.space_options.colour: unknown option"),
                              ("search.sampler=gdas", "weighting: gumbel"),
                              ("search.episode.n_way=11", "search.val_split (with search.episode): n_way 11")]:
        assert cli.main(["-q", "search", str(search_config), override]) == 2
        assert message in capsys.readouterr().err


def test_search_resumes_after_sigkill_with_the_same_genotype(search_config, tmp_path):
    overrides = ["search.steps=24", "search.checkpoint_every=4", "search.log_every=4"]
    ref = tmp_path / "ref"
    assert cli.main(["-q", "search", str(search_config), *overrides, "--out", str(ref)]) == 0
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(["search", str(search_config), *overrides, "--out", str(killed)],
                                killed / "checkpoints" / "search.pt")
    step = torch.load(killed / "checkpoints" / "search.pt", weights_only=True)["step"]
    assert 0 < step < 24, "the search finished before it could be killed"
    assert cli.main(["-q", "search", "--resume", str(killed)]) == 0
    assert (killed / "genotype.yaml").read_text() == (ref / "genotype.yaml").read_text()
    a = torch.load(ref / "checkpoints" / "search.pt", weights_only=True)["supernet"]
    b = torch.load(killed / "checkpoints" / "search.pt", weights_only=True)["supernet"]
    assert all(torch.equal(a[k], b[k]) for k in a), f"killed at step {step}"
    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["phase"] == "search"]
    assert steps == list(range(4, 25, 4))


def test_darts_minus_auxiliary_skip_fades_out(episodes):
    train, val = episodes
    net = tiny(aux_skip=1.0)
    assert "aux_beta" in net.state_dict()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        net.eval()
        with_aux = net(x)
        net.aux_beta.zero_()
        assert not torch.allclose(with_aux, net(x))  # the auxiliary path contributes while beta > 0
        net.aux_beta.fill_(1.0)
    sampler = DartsStrategy(net, steps=3)
    betas = []
    for i in range(3):
        sampler.step(train.episode(i), val.episode(i))
        betas.append(float(net.aux_beta))
    assert betas == [1.0, 0.5, 0.0]
    g = net.derive()
    assert not any("aux" in name for name, _ in net.subnet(g).named_modules())


def test_kendall_tau():
    from nas.search.ranking import kendall_tau
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # tau-b with a tie in b: C=5, D=0, ties_b=1 -> 5 / sqrt(6 * 5)
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 3]) == pytest.approx(5 / 30 ** 0.5)
