"""Timing a module; latency tables: plans that match the networks, files, fingerprints and refusal (the CUDA
path included, as data), the predictor, calibration and the latency commands."""

import json
import platform
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

from nas import cli
from nas.latency import (LatencyPredictor, LatencyStats, LatencyTable, LatencyTableError, build_table,
                         device_fingerprint, measure_latency, validate_table)
from nas.latency import measure
from nas.latency.fingerprint import fingerprint_differences
from nas.latency.validate import accuracy_metrics, cross_validated, cross_validated_per_op, fit_affine, fit_per_op
from nas.search.ranking import spearman_rho
from search_spaces import build_network, create_supernet

from ..conftest import input_shapes_run


def test_measure_latency_statistics_and_mode(monkeypatch):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).train()
    stats = measure_latency(net, (2, 1, 8, 8), "cpu", warmup=1, repeats=5)
    assert stats.count == 5 and stats.median_ms > 0 and stats.mean_ms > 0
    durations = [1.0, 2.0, 3.0, 4.0, 10.0]  # ms, read off a stand-in clock: the figures are these times' own
    ticks = iter([t for i, d in enumerate(durations) for t in (float(i), i + d / 1000)])
    monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    clocked = measure_latency(net, (2, 1, 8, 8), "cpu", warmup=1, repeats=5)
    assert (clocked.median_ms, clocked.mean_ms, clocked.var_ms2, clocked.count) == pytest.approx((3.0, 4.0, 10.0, 5))
    monkeypatch.undo()
    assert net.training  # restored
    assert torch.equal(net[1].running_mean, torch.zeros(4))  # timed in eval mode: no statistics updated
    cl = measure_latency(net, (2, 1, 8, 8), "cpu", warmup=0, repeats=1, channels_last=True)
    assert cl.count == 1 and cl.var_ms2 == 0.0
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(net, (1, 1, 8, 8), repeats=0)


# -- lookup tables -------------------------------------------------------------------------------

SPACES = {"darts": {"channels": 4, "cells": 3, "nodes": 2}, "blocks": {"stem_channels": 4,
                                                                     "stages": [[8, 2, 2], [16, 2, 2]]}}
SHAPE = (1, 16, 16)


@pytest.fixture(scope="module")
def tables():
    return {name: build_table(name, opts, SHAPE, warmup=0, repeats=2, progress=False) for name, opts in SPACES.items()}


@pytest.mark.parametrize("space", sorted(SPACES))
def test_plan_shapes_are_the_shapes_the_stand_alone_network_runs(space):
    supernet = create_supernet(space, 1, **SPACES[space])
    plan = supernet.latency_plan(SHAPE)
    g = supernet.sample_path(torch.Generator().manual_seed(3))
    net = build_network(g, 1)
    ops = [m for m in (net.cells if space == "darts" else [net]) for m in (m.ops if space == "darts" else m.layers)]
    seen = input_shapes_run(net, ops, SHAPE)
    # ops run in genotype order, which is the order genotype_positions lists them
    chosen = [plan.positions[p][o] for p, o in supernet.genotype_positions(g)]
    assert [s.input_shape() for s in chosen] == seen
    assert [type(s.build()) for s in chosen] == [type(m) for m in ops]


def test_table_round_trip_and_bad_files(tables, tmp_path):
    t = tables["darts"]
    assert t.fingerprint == device_fingerprint("cpu", "float32", 1)
    assert all(e["count"] == 2 and e["median_ms"] > 0 for e in t.entries.values())
    t.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json") == t
    (tmp_path / "bad.json").write_text('{"format": 1, "entries": {}}')
    with pytest.raises(LatencyTableError, match="not an fsnas latency table"):
        LatencyTable.load(tmp_path / "bad.json")
    with pytest.raises(LatencyTableError, match="does not exist"):
        LatencyTable.load(tmp_path / "none.json")


def test_a_table_from_another_device_is_refused_unless_forced(tables):
    t = LatencyTable(**{**tables["darts"].__dict__})
    t.fingerprint = {**t.fingerprint, "device_type": "cuda", "device": "NVIDIA H100 80GB HBM3", "cuda": "13.0",
                     "capability": "9.0", "threads": None}
    with pytest.raises(LatencyTableError, match=r"device_type: 'cuda' != 'cpu'.*--force"):
        t.check_device("cpu")
    t.check_device("cpu", force=True)
    other_threads = {**tables["darts"].fingerprint, "threads": 64}
    assert fingerprint_differences(other_threads, tables["darts"].fingerprint) == [
        f"threads: 64 != {tables['darts'].fingerprint['threads']}"]
    with pytest.raises(ValueError, match="dtype"):
        device_fingerprint("cpu", "float64", 1)


def test_cpu_timings_state_their_allocator_and_older_tables_are_refused(tables):
    """CPU timing fixes glibc's malloc thresholds (large activations otherwise cost history-dependent page
    faults); the setting is part of the fingerprint, so a table timed without it does not pass for one timed with it."""
    fp = tables["darts"].fingerprint
    assert fp["allocator"] == ("glibc mmap_threshold=32MiB trim_threshold=1GiB" if platform.libc_ver()[0] == "glibc"
                               else "system default")
    older = LatencyTable(**{**tables["darts"].__dict__})
    older.fingerprint = {k: v for k, v in fp.items() if k != "allocator"}
    with pytest.raises(LatencyTableError, match=r"allocator: None != .*fsnas latency build"):
        older.check_device("cpu")


@pytest.mark.parametrize("space", sorted(SPACES))
def test_prediction_is_the_sum_of_entries_and_expected_latency_is_differentiable(tables, space):
    t = tables[space]
    supernet = create_supernet(space, 1, **SPACES[space])
    pred = LatencyPredictor(t, supernet)
    plan = supernet.latency_plan(SHAPE)
    g = supernet.sample_path(torch.Generator().manual_seed(1))
    by_hand = sum(f["median_ms"] for f in t.fixed.values()) + sum(
        t.entries[plan.positions[p][o].key]["median_ms"] for p, o in supernet.genotype_positions(g))
    # predict sums in a tensor, raw in Python: the same up to rounding, whose order may differ by CPU
    assert pred.raw(g) == pytest.approx(by_hand, rel=1e-12) and pred.predict(g) == pytest.approx(pred.raw(g), rel=1e-12)
    t2 = LatencyTable(**{**t.__dict__, "predictor": {"kind": "calibrated", "intercept_ms": 0.5, "scale": 2.0}})
    assert LatencyPredictor(t2, supernet).predict(g) == pytest.approx(0.5 + 2.0 * pred.raw(g))
    scales = {op: 1.0 + k / 10 for k, op in enumerate(plan.ops)}
    t3 = LatencyTable(**{**t.__dict__, "predictor": {"kind": "per_op", "intercept_ms": 0.25, "op_scales": scales}})
    per_op = LatencyPredictor(t3, supernet)
    assert per_op.predict(g) == pytest.approx(0.25 + sum(
        t.entries[plan.positions[p][o].key]["median_ms"] * scales[plan.ops[o]]
        for p, o in supernet.genotype_positions(g)))
    exp = pred.expected()
    exp.backward()
    alphas = supernet.arch_parameters()
    assert exp.requires_grad and all(a.grad is not None and a.grad.abs().sum() > 0 for a in alphas)
    if space == "blocks":  # one-hot op weights: the expectation is the genotype's own latency
        with torch.no_grad():
            supernet.alpha.zero_()
            for p, o in supernet.genotype_positions(g):
                supernet.alpha[p, o] = 50.0
        assert pred.expected().item() == pytest.approx(pred.raw(g), rel=1e-6)


def test_a_table_of_another_space_is_refused(tables):
    with pytest.raises(LatencyTableError, match="lacks .* entries of this space"):
        LatencyPredictor(tables["darts"], create_supernet("darts", 1, channels=8, cells=3, nodes=2))


def test_calibration_recovers_an_affine_map_and_metrics():
    raw = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0]
    measured = [0.3 + 1.7 * r for r in raw]
    a, b = fit_affine(raw, measured)
    assert a == pytest.approx(0.3) and b == pytest.approx(1.7)
    assert cross_validated(raw, measured) == pytest.approx(measured)
    m = accuracy_metrics([1.04 * x for x in measured], measured)
    assert m["rmspe"] == pytest.approx(0.04) and m["within_5pct"] == 1.0 and m["within_10pct"] == 1.0
    assert m["kendall_tau"] == 1.0 and m["spearman_rho"] == 1.0
    by_op = [[1.0, 0.0, 2.0, 0.0], [2.0, 1.0, 0.5, 0.0], [0.5, 3.0, 1.0, 0.0], [3.0, 2.0, 2.5, 0.0],
             [1.5, 0.5, 4.0, 0.0], [2.5, 2.5, 0.5, 0.0], [0.2, 1.5, 3.0, 0.0], [4.0, 0.1, 1.0, 0.0]]
    truth = [0.4 + 1.2 * a + 0.7 * b + 2.0 * c for a, b, c, _ in by_op]
    intercept, scales = fit_per_op(by_op, truth)
    assert intercept == pytest.approx(0.4) and scales == pytest.approx([1.2, 0.7, 2.0, 1.0])  # unused: 1
    assert cross_validated_per_op(by_op, truth) == pytest.approx(truth)
    assert spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0 and spearman_rho([1, 1, 2], [1, 2, 3]) == pytest.approx(
        0.8660254, rel=1e-6)


def timed_as(table: LatencyTable, truth: str):
    """A stand-in for ``measure_network`` whose whole-network times follow from the table's entries, so that the
    predictor validation must choose is known: ``sum``, the table sum itself; ``affine``, 0.3 ms + 1.7 x the sum;
    ``per_op``, 0.5 ms + each op type's entries times a scale of its own."""
    predictor = LatencyPredictor(table, table.supernet())
    scales = torch.linspace(0.4, 3.0, len(predictor.ops), dtype=torch.float64).tolist()
    truths = {"sum": predictor.raw, "affine": lambda g: 0.3 + 1.7 * predictor.raw(g),
              "per_op": lambda g: 0.5 + sum(s * c for s, c in zip(scales, predictor.by_op(g)))}

    def measure_network(genotype, image_shape, device="cpu", dtype="float32", batch=1, warmup=10, repeats=50,
                        channels_last=False, mode="eager", compile_mode=None) -> LatencyStats:
        ms = truths[truth](genotype)
        return LatencyStats(ms, ms, 0.0, repeats)
    return measure_network


@pytest.mark.parametrize("truth, samples, chosen", [("sum", 8, "sum"), ("affine", 4, "calibrated"),
                                                    ("per_op", 24, "per_op")])
def test_validation_chooses_the_predictor_the_timings_call_for(tables, monkeypatch, truth, samples, chosen):
    """Times equal to the table sum: the plain sum, exact (its RMSPE is 0; the first of equals is kept).  An affine
    map of the sum, cross-validated on halves of 2: the calibrated map, fitted exactly, while the per-op fit has more
    unknowns than points.  A scale per op type, on halves of 12: the per-op predictor, the only exact one."""
    table = LatencyTable(**{**tables["darts"].__dict__})
    monkeypatch.setattr("nas.latency.validate.measure_network", timed_as(table, truth))
    report = validate_table(table, samples=samples, seed=0, progress=False)
    assert table.predictor["kind"] == report["predictor"]["kind"] == chosen
    key = {"sum": "table_sum", "calibrated": "calibrated_cv", "per_op": "per_op_cv"}[chosen]
    assert report[key]["rmspe"] < 1e-9 and report["predictor"]["why"].startswith("lowest RMSPE")
    if chosen != "sum":  # a fitted predictor is kept only for being better (the plain sum wins a tie)
        assert min(report[k]["rmspe"] for k in ("table_sum", "calibrated_cv", "per_op_cv") if k != key) > 1e-3


def test_latency_commands_build_measure_validate(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "space.yaml"
    cfg.write_text(yaml.safe_dump({"search": {"enabled": True, "space": "darts", "space_options": SPACES["darts"]}}))
    table = tmp_path / "table.json"
    fast = ["--warmup", "0", "--repeats", "2", "--threads", "1"]
    assert cli.main(["-q", "latency", "build", "--space", str(cfg), "--image-shape", "1x16x16", "--out", str(table),
                     *fast]) == 0
    assert "fixed parts timed on" in capsys.readouterr().out  # the summary is printed, -q or not
    assert cli.main(["-q", "latency", "build", "--space", str(cfg), "--out", str(table)]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
    g = create_supernet("darts", 1, **SPACES["darts"]).sample_path(torch.Generator().manual_seed(0))
    g.save(tmp_path / "g.yaml")
    assert cli.main(["-q", "latency", "measure", str(tmp_path / "g.yaml"), "--table", str(table), *fast,
                     "--out", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    ms, predicted = m["measured"]["median_ms"], m["predicted_ms"]
    assert capsys.readouterr().out == (f"measured {ms:.3f} ms (median of 2); predicted {predicted:.3f} ms (sum, "
                                       f"{(predicted - ms) / ms:+.1%})\n")
    assert m["predicted_ms"] > 0 and m["measured"]["count"] == 2 and m["input"] == [1, 16, 16]
    assert cli.main(["-q", "latency", "measure", str(tmp_path / "g.yaml"), "--table", str(table), "--threads",
                     "2"]) == 2
    assert "another setup (threads: 1 != 2)" in capsys.readouterr().err
    # networks timed as a scale per op type of their entries (timed for real: test_timing_leaves_...): per_op it is
    monkeypatch.setattr("nas.latency.validate.measure_network", timed_as(LatencyTable.load(table), "per_op"))
    assert cli.main(["-q", "latency", "validate", str(table), "--samples", "24", "--out", str(tmp_path / "v")]) == 0
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    printed = capsys.readouterr().out.splitlines()
    assert [line[:12] for line in printed[:4]] == ["table sum:  ", "calibrated: ", "per op:     ", "per launch: "]
    chosen = report["predictor"]
    assert printed[4] == f"predictor: {chosen['kind']} ({chosen['why']}); report: {tmp_path / 'v'}"
    assert report["samples"] == 24 and len(report["networks"]) == 24 and (tmp_path / "v" / "validation.png").is_file()
    assert LatencyTable.load(table).predictor["kind"] == "per_op"
    assert set(report) >= {"table_sum", "calibrated_cv", "per_op_cv", "launch_cv", "fitted"}
    assert LatencyTable.load(table).predictor == report["predictor"]
    assert cli.main(["-q", "latency", "validate", str(tmp_path / "nope.json"), "--out", str(tmp_path / "v2")]) == 2
    assert "build one with fsnas latency build" in capsys.readouterr().err


def test_timing_leaves_the_thread_count_as_it_was(tmp_path):
    before = torch.get_num_threads()
    build_table("darts", SPACES["darts"], SHAPE, threads=1, warmup=0, repeats=1, progress=False).save(tmp_path / "t.json")
    g = create_supernet("darts", 1, **SPACES["darts"]).sample_path(torch.Generator().manual_seed(0))
    g.save(tmp_path / "g.yaml")
    assert cli.main(["-q", "latency", "measure", str(tmp_path / "g.yaml"), "--threads", "1", "--repeats", "1"]) == 0
    assert cli.main(["-q", "latency", "validate", str(tmp_path / "t.json"), "--samples", "4", "--repeats", "1",
                     "--out", str(tmp_path / "v")]) == 0
    assert torch.get_num_threads() == before


def test_a_genotype_or_search_of_another_space_is_refused_naming_both(tables, tmp_path, capsys):
    for name, table in tables.items():
        table.save(tmp_path / f"{name}.json")
    create_supernet("blocks", 1, **SPACES["blocks"]).sample_path().save(tmp_path / "blocks.yaml")
    (tmp_path / "conv4.yaml").write_text("space: fixed\nmodel: conv4\n")
    fast = ["--warmup", "0", "--repeats", "1"]
    for genotype, table, fix in (("blocks", "darts", "build a table of the blocks space with fsnas latency build"),
                                 ("conv4", "blocks", "a fixed network has no latency table: measure it without one")):
        args = ["-q", "latency", "measure", str(tmp_path / f"{genotype}.yaml"), "--table", str(tmp_path / f"{table}.json")]
        assert cli.main([*args, *fast]) == 2
        err = capsys.readouterr().err
        assert f"{table}.json is a latency table of the {table} space, but the space of " in err and fix in err, err
    out = tmp_path / "run"
    assert cli.main(["-q", "search", "configs/quickstart.yaml", f"search.latency.table={tmp_path / 'blocks.json'}",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "blocks.json is a latency table of the blocks space, but search.space is darts; build a table of the " \
           "darts space with fsnas latency build --space CONFIG" in err and not out.exists()
