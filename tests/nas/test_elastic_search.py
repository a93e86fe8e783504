"""The elastic space through fsnas: a latency table of it predicts a path as the sum of the slots it runs, a
SPOS or sandwich search with a latency target ends in a network under the target, and darts/gdas are refused."""

import json

import pytest
import torch
import yaml

from nas import cli
from nas.latency.table import LatencyPredictor, build_table
from search_spaces import create_supernet

from .test_search import SEARCH

OPTIONS = {"stages": [2, 3], "widths": [4, 8], "depths": [1, 2], "kernels": [3, 5], "convs": [1, 2],
           "downsampling": ["maxpool", "stride"]}
SHAPE = (1, 16, 16)
ELASTIC = {**SEARCH, "search": {**SEARCH["search"], "space": "elastic", "space_options": OPTIONS, "sampler": "spos",
                                "steps": 8, "log_every": 4, "checkpoint_every": 4}}


@pytest.fixture(scope="module")
def table():
    return build_table("elastic", OPTIONS, SHAPE, warmup=0, repeats=1, progress=False)


def test_a_prediction_is_the_sum_of_the_slots_a_path_runs(table):
    supernet = create_supernet("elastic", 1, **OPTIONS)
    predictor = LatencyPredictor(table, supernet)
    plan = supernet.latency_plan(SHAPE)
    assert set(table.entries) == set(plan.slots()) and not table.fixed
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        g = supernet.sample_path(gen)
        by_hand = sum(table.entries[plan.positions[p][o].key]["median_ms"] for p, o in supernet.genotype_positions(g))
        assert predictor.predict(g) == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("sampler", ["spos", "sandwich", "progressive"])
def test_a_search_with_a_latency_target_ends_under_it(table, tmp_path, sampler):
    table.save(tmp_path / "table.json")
    predictor = LatencyPredictor(table, create_supernet("elastic", 1, **OPTIONS))
    smallest = predictor.predict(create_supernet("elastic", 1, **OPTIONS).extreme_path(False))
    target = 3 * smallest
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**ELASTIC, "data": {**ELASTIC["data"], "image_size": 16},
                                      "search": {**ELASTIC["search"], "sampler": sampler,
                                                 "latency": {"table": str(tmp_path / "table.json"),
                                                             "target_ms": target}}}))
    out = tmp_path / sampler
    assert cli.main(["-q", "search", str(config), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latency"]["predicted_ms"] <= target
    assert yaml.safe_load((out / "genotype.yaml").read_text())["space"] == "elastic"


def test_darts_and_gdas_are_refused_on_the_elastic_space(tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(ELASTIC))
    assert cli.main(["-q", "search", str(config), "search.sampler=darts"]) == 2
    assert "space elastic cannot be searched by the darts sampler" in capsys.readouterr().err
