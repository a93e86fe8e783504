"""Several latency tables in one search (search.latency.also), targets from a genotype (target_of), and
the re-ranking of evolution's shortlist by a short stand-alone training (search.evolution.rerank)."""

import json
import re
from types import SimpleNamespace

import pytest
import torch
import yaml

from meta.data import load_dataset
from nas import cli
from nas.checks import load_config
from nas.latency.table import LatencyPredictor, LatencyTable, build_table
from nas.runs import RunDir
from nas.search import rerank as rerank_module
from nas.search.evolution import Candidate
from nas.search.rerank import RERANK_FILE, proxy_config, rerank
from nas.search.shortlist import pick_shortlist
from search_spaces import create_supernet, genotype_from_dict, load_genotype

from .test_elastic_search import ELASTIC, OPTIONS, SHAPE


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A table of the space, and a second one in which every 5x5 slot costs 100 times as much (a device on which
    large kernels are slow): a bound on the second keeps 5x5 kernels out where the first alone would not."""
    folder = tmp_path_factory.mktemp("tables")
    table = build_table("elastic", OPTIONS, SHAPE, warmup=0, repeats=1, progress=False)
    table.save(folder / "a.json")
    slow = LatencyTable.load(folder / "a.json")
    for key, entry in slow.entries.items():
        if "_k5" in key:
            entry["median_ms"] *= 100
    slow.save(folder / "b.json")
    return folder / "a.json", folder / "b.json"


def predict(path, genotype) -> float:
    return LatencyPredictor(LatencyTable.load(path), create_supernet("elastic", 1, **OPTIONS)).predict(genotype)


def write_config(tmp_path, latency: dict, **search) -> str:
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**ELASTIC, "data": {**ELASTIC["data"], "image_size": 16},
                                      "search": {**ELASTIC["search"], "latency": latency, **search}}))
    return str(config)


def smallest_genotype(tmp_path) -> str:
    path = tmp_path / "smallest.yaml"
    path.write_text(create_supernet("elastic", 1, **OPTIONS).extreme_path(False).to_yaml())
    return str(path)


def test_the_chosen_network_meets_every_table(tables, tmp_path):
    a, b = tables
    small = load_genotype(smallest_genotype(tmp_path))
    loose_a, tight_b = 4 * predict(a, small), 2 * predict(b, small)
    config = write_config(tmp_path, {"table": str(a), "target_ms": loose_a,
                                     "also": [{"table": str(b), "target_ms": tight_b}]})
    assert cli.main(["-q", "search", config, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    chosen = load_genotype(tmp_path / "run" / "genotype.yaml")
    assert predict(a, chosen) <= loose_a and predict(b, chosen) <= tight_b
    assert all(s.kernel == 3 for s in chosen.stages)  # one 5x5 stage alone is 100x the smallest on table b
    also = summary["latency_also"]
    assert len(also) == 1 and also[0]["target_ms"] == tight_b and also[0]["predicted_ms"] == predict(b, chosen)
    # every candidate evolution kept meets both
    for row in json.loads((tmp_path / "run" / "candidates.json").read_text()):
        g = genotype_from_dict(row["genotype"])
        assert predict(a, g) <= loose_a and predict(b, g) <= tight_b


def test_a_target_of_a_genotype_is_its_prediction_times_the_factor(tables, tmp_path):
    a, b = tables
    reference = smallest_genotype(tmp_path)
    config = write_config(tmp_path, {"table": str(a), "target_of": reference, "target_factor": 3.0,
                                     "also": [{"table": str(b)}]})
    assert cli.main(["-q", "search", config, "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    small = load_genotype(reference)
    assert summary["latency"]["target_ms"] == pytest.approx(3.0 * predict(a, small), rel=1e-12)
    assert summary["latency_also"][0]["target_ms"] == pytest.approx(3.0 * predict(b, small), rel=1e-12)
    assert summary["latency"]["predicted_ms"] <= summary["latency"]["target_ms"]


@pytest.mark.parametrize("latency, search, message", [
    ({"table": "A", "also": [{"table": "missing.json", "target_ms": 1.0}]}, {},
     "search.latency.also.0.table: missing.json does not exist"),
    ({"table": "A", "also": [{"table": "B", "target_ms": -1.0}]}, {}, "also.0.target_ms: must be positive"),
    ({"table": "A", "also": [{"table": "B"}]}, {}, "search.latency.also.0: give it a target_ms"),
    ({"table": "A", "target_of": "nowhere.yaml"}, {}, "search.latency.target_of: cannot read nowhere.yaml"),
    ({"table": "A", "target_of": "A"}, {}, "search.latency.target_of: .* is not a genotype"),
    ({"target_of": "REF"}, {}, "search.latency.target_of needs search.latency.table"),
    ({}, {"evolution": {**ELASTIC["search"].get("evolution", {}), "rerank": {"top": -1}}}, "rerank.top: must be >= 0"),
    ({}, {"evolution": {"rerank": {"top": 2, "steps": 0}}}, "rerank.steps"),
])
def test_bad_bounds_and_rerank_settings_get_one_message(tables, tmp_path, capsys, latency, search, message):
    a, b = tables
    names = {"A": str(a), "B": str(b), "REF": smallest_genotype(tmp_path)}
    latency = {k: names.get(v, v) if isinstance(v, str) else v for k, v in latency.items()}
    latency["also"] = [{k: names.get(v, v) if isinstance(v, str) else v for k, v in e.items()}
                       for e in latency.get("also", [])]
    out = tmp_path / "run"
    assert cli.main(["-q", "search", write_config(tmp_path, latency, **search), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 2 and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()


def test_darts_refuses_a_shortlist_to_rerank(tmp_path, capsys):
    from .test_search import SEARCH
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump({**SEARCH, "search": {**SEARCH["search"], "evolution": {"rerank": {"top": 2}}}}))
    assert cli.main(["-q", "search", str(config)]) == 2
    assert "there is no shortlist to re-rank" in capsys.readouterr().err


def test_the_proxy_scales_the_learning_rate_step_with_its_steps(tmp_path):
    config = write_config(tmp_path, {}, evolution={"rerank": {"top": 2, "steps": 500}})
    cfg = load_config(config)
    cfg.train.steps, cfg.train.options = 6500, {"lr": 0.001, "lr_step": 2000}
    proxy = proxy_config(cfg)
    assert proxy.train.steps == 500 and proxy.train.options == {"lr": 0.001, "lr_step": 154}
    assert proxy.train.episode.n_way == 20 and cfg.train.options["lr_step"] == 2000  # the run's config untouched


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", train_classes=40, val_classes=10, test_classes=10, images_per_class=20,
                        image_size=16)


def rerank_config(tmp_path, steps: int, eval_episodes: int, n_query: int):
    return load_config(write_config(tmp_path, {}, evolution={"rerank": {
        "top": 3, "steps": steps, "eval_episodes": eval_episodes,
        "episode": {"n_way": 5, "k_shot": 1, "n_query": n_query}}}))


def distinct_paths(supernet, n: int) -> list:
    gen, drawn = torch.Generator().manual_seed(0), []
    for _ in range(100 * n):  # bounded
        g = supernet.sample_path(gen)
        if g not in drawn:
            drawn.append(g)
        if len(drawn) == n:
            return drawn
    raise AssertionError(f"fewer than {n} distinct paths in {100 * n} draws")


def test_rerank_orders_the_shortlist_by_proxy_and_resumes_without_training_again(tmp_path, monkeypatch, ds):
    cfg = rerank_config(tmp_path, steps=4, eval_episodes=3, n_query=2)
    genotypes = distinct_paths(create_supernet("elastic", 1, **OPTIONS), 4)
    candidates = [Candidate(g, score=1.0 - i / 10, params=0) for i, g in enumerate(genotypes)]
    run = RunDir.create(cfg, tmp_path / "run")
    ranked = rerank(cfg, run, ds, torch.device("cpu"), candidates, progress=False)
    rows = json.loads((run.path / RERANK_FILE).read_text())
    assert len(rows) == 3 and [c.genotype for c in ranked[3:]] == genotypes[3:]  # the rest follow unchanged
    proxies = [c.proxy for c in ranked[:3]]
    assert proxies == sorted(proxies, reverse=True) and {c.genotype for c in ranked[:3]} == set(genotypes[:3])
    assert ranked[3].proxy is None

    def no_training(*args, **kwargs):
        raise AssertionError("a candidate in rerank.json was trained again")
    monkeypatch.setattr(rerank_module, "build_learner", no_training)
    again = [Candidate(g, score=1.0 - i / 10, params=0) for i, g in enumerate(genotypes)]
    assert [c.proxy for c in rerank(cfg, run, ds, torch.device("cpu"), again, progress=False)[:3]] == proxies


def test_rerank_puts_the_best_proxy_first_whatever_the_one_shot_order(tmp_path, monkeypatch, ds):
    """Proxy accuracies rising along the shortlist (the one-shot order) must come out reversed."""
    cfg = rerank_config(tmp_path, steps=1, eval_episodes=1, n_query=1)
    supernet = create_supernet("elastic", 1, **OPTIONS)
    small, large = supernet.extreme_path(False), supernet.extreme_path(True)
    middle = supernet.sample_path(torch.Generator().manual_seed(3))
    calls = []

    def rising(learner, sampler, episodes, device, progress=True):
        calls.append(1)
        return SimpleNamespace(accuracy=0.1 * len(calls), ci95=0.0)
    monkeypatch.setattr(rerank_module, "evaluate", rising)
    candidates = [Candidate(g, score=s, params=0) for g, s in ((small, 0.9), (middle, 0.8), (large, 0.7))]
    ranked = rerank(cfg, RunDir.create(cfg, tmp_path / "run"), ds, torch.device("cpu"), candidates, progress=False)
    assert [c.genotype for c in ranked] == [large, middle, small]
    assert [c.proxy for c in ranked] == pytest.approx([0.3, 0.2, 0.1])


def test_a_search_with_rerank_chooses_the_best_proxy(tmp_path):
    config = write_config(tmp_path, {}, evolution={"population": 4, "generations": 1, "top_k": 2, "eval_episodes": 2,
                                                   "bn_batches": 1,
                                                   "rerank": {"top": 3, "steps": 2, "eval_episodes": 2,
                                                              "episode": {"n_way": 5, "k_shot": 1, "n_query": 2}}})
    out = tmp_path / "run"
    assert cli.main(["-q", "search", config, "--out", str(out)]) == 0
    rows = json.loads((out / RERANK_FILE).read_text())
    best = max(rows, key=lambda r: r["proxy_accuracy"])
    assert yaml.safe_load((out / "genotype.yaml").read_text()) == best["genotype"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["proxy_accuracy"] == best["proxy_accuracy"]
    table = json.loads((out / "candidates.json").read_text())
    assert len(table) == 3 and [r["proxy_accuracy"] for r in table] == sorted((r["proxy_accuracy"] for r in rows),
                                                                              reverse=True)


def test_a_spread_shortlist_takes_the_best_of_each_family_in_turn():
    drawn = distinct_paths(create_supernet("elastic", 1, **{**OPTIONS, "heads": ["flatten", "avgpool"]}), 12)
    candidates = [Candidate(g, score=1.0 - i / 100, params=0) for i, g in enumerate(drawn)]  # best first
    heads = [c.genotype.head for c in candidates]
    assert len(set(heads)) == 2
    plain, rest = pick_shortlist(candidates, 4, [])
    assert plain == candidates[:4] and rest == candidates[4:]
    spread, rest = pick_shortlist(candidates, 4, ["head"])
    first, second = heads[0], next(h for h in heads if h != heads[0])
    assert [c.genotype.head for c in spread] == [first, second, first, second]
    for head in (first, second):  # within a family, the one-shot order
        mine = [c for c in candidates if c.genotype.head == head]
        assert [c for c in spread if c.genotype.head == head] == mine[:2]
    assert sorted(map(id, spread + rest)) == sorted(map(id, candidates)) and [c.score for c in rest] == sorted(
        (c.score for c in rest), reverse=True)
    by_stages, _ = pick_shortlist(candidates, 3, ["head", "stages"])  # a list field counts by its length
    assert len({(c.genotype.head, len(c.genotype.stages)) for c in by_stages}) == 3


def test_the_reference_is_trained_alongside_and_returned_when_it_wins(tmp_path, monkeypatch, ds):
    cfg = rerank_config(tmp_path, steps=1, eval_episodes=1, n_query=1)
    supernet = create_supernet("elastic", 1, **OPTIONS)
    reference = Candidate(supernet.extreme_path(False), score=0.1, params=0)
    others = [Candidate(supernet.extreme_path(True), score=0.9, params=0),
              Candidate(supernet.sample_path(torch.Generator().manual_seed(3)), score=0.8, params=0)]
    calls = []

    def rising(learner, sampler, episodes, device, progress=True):
        calls.append(1)
        return SimpleNamespace(accuracy=0.1 * len(calls), ci95=0.0)
    monkeypatch.setattr(rerank_module, "evaluate", rising)
    ranked = rerank(cfg, RunDir.create(cfg, tmp_path / "run"), ds, torch.device("cpu"), others, reference,
                    progress=False)
    assert ranked[0] is reference and len(calls) == 3 and len(ranked) == 3
    rows = json.loads((tmp_path / "run" / RERANK_FILE).read_text())
    assert genotype_from_dict(rows[-1]["genotype"]) == reference.genotype


def test_rerank_settings_that_cannot_work_are_refused(tables, tmp_path, capsys):
    a, _ = tables
    for evolution, latency, message in (
            ({"rerank": {"top": 2, "spread_over": ["head", "colour"]}}, {},
             "spread_over: colour not a field of this space's genotypes"),
            ({"rerank": {"top": 2, "with_reference": True}}, {"table": str(a), "target_ms": 1.0},
             "with_reference: the reference is search.latency.target_of")):
        assert cli.main(["-q", "search", write_config(tmp_path, latency, evolution=evolution),
                         "--out", str(tmp_path / "never")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "never").exists()
