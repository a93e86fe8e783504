"""search.latency.confirm: evolution's candidates timed against target_of's network before the shortlist
takes them (nas.search.confirm)."""

import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from nas import cli
from nas.checks import load_config
from nas.latency.table import LatencyPredictor, LatencyTable
from nas.runs import RunDir
from nas.search import confirm as confirm_module
from nas.search.confirm import CHECK_FILE, LatencyCheck, confirmed, timed_ratio
from nas.search.constraints import LatencyBound
from nas.search.evolution import Candidate
from nas.search.shortlist import pick_shortlist
from search_spaces import create_supernet, load_genotype

from .test_elastic_search import OPTIONS, SHAPE
from .test_search_bounds import distinct_paths, smallest_genotype, tables, write_config  # noqa: F401 (fixture)


class FakeClock:
    """measure_like_table with a set time per network (ms by genotype), recording the order of the calls."""

    def __init__(self, ms: dict) -> None:
        self.ms, self.calls = ms, []

    def __call__(self, table, genotype, image_shape, device):
        self.calls.append(genotype)
        return SimpleNamespace(median_ms=self.ms[genotype])


def bound_on(path, limit_ms: float) -> LatencyBound:
    predictor = LatencyPredictor(LatencyTable.load(path), create_supernet("elastic", 1, **OPTIONS))
    return LatencyBound("test", predictor, limit_ms, str(path))


@pytest.fixture
def nets():
    supernet = create_supernet("elastic", 1, **OPTIONS)
    return supernet.extreme_path(False), distinct_paths(supernet, 5)


def test_a_network_is_timed_in_turns_with_the_reference_against_the_limit_over_its_prediction(tables, nets):
    a, _ = tables
    reference, (fast, slow, *_) = nets
    bound = bound_on(a, 1.2 * bound_on(a, 1.0).predict(reference))  # 1.2x the reference's prediction
    clock = FakeClock({reference: 10.0, fast: 11.5, slow: 12.5})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(confirm_module, "measure_like_table", clock)
        ok = timed_ratio(bound, fast, reference, SHAPE, torch.device("cpu"), rounds=3)
        too_slow = timed_ratio(bound, slow, reference, SHAPE, torch.device("cpu"), rounds=2)
    assert clock.calls[:6] == [fast, reference] * 3  # alternating rounds
    assert ok["ratio"] == pytest.approx(1.15) and ok["allowed"] == pytest.approx(1.2) and ok["passes"]
    assert too_slow["ratio"] == pytest.approx(1.25) and not too_slow["passes"]
    assert ok["network_ms"] == [11.5] * 3 and ok["reference_ms"] == [10.0] * 3


def test_the_check_is_written_as_it_goes_times_each_network_once_and_stops_at_its_cap(tables, nets, tmp_path):
    a, b = tables
    reference, drawn = nets
    bounds = [bound_on(a, bound_on(a, 1.0).predict(reference)), bound_on(b, bound_on(b, 1.0).predict(reference))]
    ms = {reference: 10.0, drawn[0]: 9.0, drawn[1]: 11.0, drawn[2]: 9.5, drawn[3]: 8.0}
    cfg = load_config(write_config(tmp_path, {}))
    run = RunDir.create(cfg, tmp_path / "run")
    clock = FakeClock(ms)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(confirm_module, "measure_like_table", clock)
        check = LatencyCheck(bounds, reference, SHAPE, torch.device("cpu"), rounds=2, max_networks=3, run=run)
        assert [check(g) for g in drawn[:3]] == [True, False, True]
        assert len(clock.calls) == 3 * 2 * 2 * 2  # networks x tables x rounds x (network, reference)
        assert check(drawn[3]) is False  # over the cap: refused untimed
        assert len(clock.calls) == 24 and check.passed == 2
        assert check.ratios(drawn[1]) == pytest.approx([1.1, 1.1]) and check.ratios(drawn[3]) is None
        rows = json.loads((run.path / CHECK_FILE).read_text())
        assert [r["passes"] for r in rows] == [True, False, True]
        again = LatencyCheck(bounds, reference, SHAPE, torch.device("cpu"), rounds=2, max_networks=3, run=run)
        assert [again(g) for g in drawn[:3]] == [True, False, True] and len(clock.calls) == 24  # none timed again


def test_the_shortlist_passes_over_what_the_check_refuses_and_asks_only_for_what_it_takes(nets):
    drawn = distinct_paths(create_supernet("elastic", 1, **{**OPTIONS, "heads": ["flatten", "avgpool"]}), 12)
    candidates = [Candidate(g, score=1.0 - i / 100, params=0) for i, g in enumerate(drawn)]
    refused = {candidates[0].genotype, candidates[2].genotype}
    asked = []

    def accept(genotype):
        asked.append(genotype)
        return genotype not in refused
    shortlist, rest = pick_shortlist(candidates, 2, [], accept)
    assert shortlist == [candidates[1], candidates[3]] and asked == [c.genotype for c in candidates[:4]]
    assert candidates[0] in rest and candidates[2] in rest and len(rest) == 10
    heads = [c.genotype.head for c in candidates]
    spread, _ = pick_shortlist(candidates, 2, ["head"], accept)
    assert sorted(c.genotype.head for c in spread) == sorted(set(heads))  # one of each family still
    assert not refused & {c.genotype for c in spread}


def test_the_reference_comes_first_when_no_candidate_passed(nets, tables, tmp_path):
    a, _ = tables
    reference, drawn = nets
    cfg = load_config(write_config(tmp_path, {}))
    run = RunDir.create(cfg, tmp_path / "run")
    check = LatencyCheck([bound_on(a, 1.0)], reference, SHAPE, torch.device("cpu"), 1, 5, run)
    check.results = {drawn[0]: {"passes": False, "tables": [{"ratio": 1.3}]},
                     drawn[1]: {"passes": True, "tables": [{"ratio": 0.9}]}}
    ref = Candidate(reference, score=0.1, params=0)
    failing = [Candidate(drawn[0], 0.9, 0), Candidate(drawn[2], 0.8, 0)]
    out = confirmed(failing, check, lambda: ref)
    assert out[0] is ref and out[1:] == failing and out[1].measured == [1.3] and out[2].measured is None
    passing = [Candidate(drawn[1], 0.9, 0), Candidate(drawn[0], 0.8, 0)]
    assert confirmed(passing, check, lambda: ref) == passing and passing[0].measured == [0.9]


EVOLUTION = {"population": 4, "generations": 1, "top_k": 3, "eval_episodes": 2, "bn_batches": 1}


def test_a_search_times_its_choice_and_returns_the_reference_when_every_candidate_is_slower(tables, tmp_path,
                                                                                            monkeypatch):
    a, _ = tables
    reference = smallest_genotype(tmp_path)
    latency = {"table": str(a), "target_of": reference, "target_factor": 50.0, "confirm": {"rounds": 1}}
    config = write_config(tmp_path, latency, evolution=EVOLUTION)
    assert cli.main(["-q", "search", config, "--out", str(tmp_path / "timed")]) == 0  # really timed
    summary = json.loads((tmp_path / "timed" / "summary.json").read_text())
    assert summary["latency_confirm"]["timed"] == 1 and summary["latency_confirm"]["passed"] == 1
    first = json.loads((tmp_path / "timed" / "candidates.json").read_text())[0]
    assert len(first["measured_ratio_to_reference"]) == 1 and first["measured_ratio_to_reference"][0] > 0

    ref = load_genotype(reference)
    monkeypatch.setattr(confirm_module, "measure_like_table",
                        lambda t, g, s, d: SimpleNamespace(median_ms=1.0 if g == ref else 100.0))
    assert cli.main(["-q", "search", config, "--out", str(tmp_path / "slow")]) == 0
    assert load_genotype(tmp_path / "slow" / "genotype.yaml") == ref
    summary = json.loads((tmp_path / "slow" / "summary.json").read_text())
    assert summary["latency_confirm"]["passed"] == 0 and summary["latency_confirm"]["timed"] >= 1


@pytest.mark.parametrize("latency, sampler, message", [
    ({"table": "A", "target_ms": 1.0, "confirm": {"rounds": 2}}, None, "confirm: candidates are timed against"),
    ({"table": "A", "target_of": "REF", "confirm": {"rounds": -1}}, None, "confirm.rounds: must be >= 0"),
    ({"table": "A", "target_of": "REF", "confirm": {"rounds": 1, "max_networks": 0}}, None, "max_networks"),
])
def test_confirm_settings_that_cannot_work_are_refused(tables, tmp_path, capsys, latency, sampler, message):
    names = {"A": str(tables[0]), "REF": smallest_genotype(tmp_path)}
    latency = {k: names.get(v, v) if isinstance(v, str) else v for k, v in latency.items()}
    out = tmp_path / "never"
    assert cli.main(["-q", "search", write_config(tmp_path, latency), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") <= 2
    assert not out.exists()


def test_a_darts_search_refuses_a_measured_check(tmp_path, capsys):
    from .test_search import SEARCH
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump({**SEARCH, "search": {**SEARCH["search"], "latency": {"confirm": {"rounds": 1}}}}))
    assert cli.main(["-q", "search", str(config)]) == 2
    assert "no candidates to time" in capsys.readouterr().err
