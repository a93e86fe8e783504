"""Deployment modes of latency tables (issue #23): eager, a CUDA graph replay or torch.compile; the mode is part
of a table's fingerprint and entries are timed in it; the predictor with a cost per kernel launch."""

import json

import pytest
import torch
import yaml
from torch import nn

from nas import cli
from nas.latency import LatencyPredictor, LatencyStats, LatencyTable, LatencyTableError, build_table, measure_latency
from nas.latency import validate as validate_module
from nas.latency.fingerprint import device_fingerprint, timing_mode
from nas.latency.table import kernel_launches
from nas.latency.validate import (accuracy_metrics, cross_validated_launch, fit_launch, measure_like_table,
                                  validate_table)
from search_spaces import create_supernet

DARTS = {"channels": 4, "cells": 3, "nodes": 2}
BLOCKS = {"stem_channels": 4, "stages": [[8, 2, 2], [16, 2, 2]], "choices": ["mbconv_k3_e3", "mbconv_k5_e3",
                                                                             "skip_connect"]}
TINY = {"stem_channels": 4, "stages": [[4, 1, 1]], "choices": ["mbconv_k3_e3", "skip_connect"]}  # 3 modules
SHAPE = (1, 16, 16)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def tables():
    return {"darts": build_table("darts", DARTS, SHAPE, warmup=0, repeats=1, progress=False),
            "blocks": build_table("blocks", BLOCKS, SHAPE, warmup=0, repeats=1, progress=False)}


def _space_file(tmp_path, space: str, options: dict):
    cfg = tmp_path / f"{space}.yaml"
    cfg.write_text(yaml.safe_dump({"search": {"enabled": True, "space": space, "space_options": options}}))
    return cfg


def _fsnas(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main(["-q", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _copy(table: LatencyTable, **fingerprint) -> LatencyTable:
    t = LatencyTable(**{**table.__dict__})
    t.fingerprint = {k: v for k, v in {**t.fingerprint, **fingerprint}.items() if v is not None}
    return t


# -- fingerprints ---------------------------------------------------------------------------------

def test_the_fingerprint_states_the_mode(tables):
    assert tables["darts"].fingerprint["mode"] == "eager" and "compile_mode" not in tables["darts"].fingerprint
    assert device_fingerprint("cpu", "float32", 1)["mode"] == "eager"
    fp = device_fingerprint("cpu", "float32", 1, mode="compile")
    assert (fp["mode"], fp["compile_mode"]) == ("compile", "default") and timing_mode(fp) == ("compile", "default")
    assert device_fingerprint("cpu", "float32", 1, mode="compile", compile_mode="max-autotune")["compile_mode"] == \
        "max-autotune"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        device_fingerprint("cpu", "float32", 1, mode="cudagraph")
    with pytest.raises(ValueError, match="applies to mode 'compile' only"):
        device_fingerprint("cpu", "float32", 1, compile_mode="default")
    with pytest.raises(ValueError, match="mode must be one of eager, cudagraph, compile"):
        device_fingerprint("cpu", "float32", 1, mode="jit")


def test_a_table_of_one_mode_is_refused_for_another(tables, tmp_path, capsys):
    compiled = _copy(tables["darts"], mode="compile", compile_mode="default")
    compiled.check_device("cpu")  # its own mode
    compiled.check_device("cpu", mode="compile", compile_mode="default")
    with pytest.raises(LatencyTableError) as exc:
        compiled.check_device("cpu", mode="eager")
    assert str(exc.value) == ("the latency table was measured on another setup (compile_mode: 'default' != None; "
                              "mode: 'compile' != 'eager'); build a table here with fsnas latency build, or pass "
                              "--force to use it anyway")
    with pytest.raises(LatencyTableError, match=r"\(compile_mode: 'default' != 'max-autotune'\)"):
        compiled.check_device("cpu", mode="compile", compile_mode="max-autotune")
    compiled.check_device("cpu", mode="eager", force=True)
    # the commands: an eager table, timed in compile mode, is refused before anything is timed or written
    tables["darts"].save(tmp_path / "eager.json")
    g = create_supernet("darts", 1, **DARTS).sample_path(torch.Generator().manual_seed(0))
    g.save(tmp_path / "g.yaml")
    rc, _, err = _fsnas(capsys, "latency", "measure", tmp_path / "g.yaml", "--table", tmp_path / "eager.json",
                        "--mode", "compile", "--out", tmp_path / "m.json")
    assert rc == 2 and "another setup (compile_mode: None != 'default'; mode: 'eager' != 'compile')" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.json").exists()
    rc, _, err = _fsnas(capsys, "latency", "validate", tmp_path / "eager.json", "--mode", "compile", "--samples", 4,
                        "--out", tmp_path / "v")
    assert rc == 2 and "mode: 'eager' != 'compile'" in err and not (tmp_path / "v").exists()


def test_a_table_from_before_modes_reads_as_eager(tables, tmp_path, capsys):
    old = _copy(tables["darts"], mode=None)
    assert "mode" not in old.fingerprint
    old.save(tmp_path / "old.json")
    loaded = LatencyTable.load(tmp_path / "old.json")
    assert timing_mode(loaded.fingerprint) == ("eager", None)
    loaded.check_device("cpu")
    loaded.check_device("cpu", mode="eager")
    with pytest.raises(LatencyTableError, match=r"mode: 'eager' != 'compile'"):
        loaded.check_device("cpu", mode="compile")
    g = create_supernet("darts", 1, **DARTS).sample_path(torch.Generator().manual_seed(0))
    g.save(tmp_path / "g.yaml")
    rc, out, err = _fsnas(capsys, "latency", "measure", tmp_path / "g.yaml", "--table", tmp_path / "old.json",
                          "--warmup", 0, "--repeats", 1, "--out", tmp_path / "m.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "m.json").read_text())["mode"] == "eager" and "predicted" in out


# -- the modes ------------------------------------------------------------------------------------

def test_cudagraph_on_the_cpu_is_refused_with_the_fix(tables, tmp_path, capsys):
    cfg = _space_file(tmp_path, "blocks", TINY)
    fix = "--mode cudagraph replays CUDA graphs and needs a CUDA device, but the device is cpu; pass --device cuda"
    rc, _, err = _fsnas(capsys, "latency", "build", "--space", cfg, "--image-shape", "1x8x8", "--mode", "cudagraph",
                        "--out", tmp_path / "t.json")
    assert rc == 2 and fix in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t.json").exists()
    g = create_supernet("blocks", 1, **TINY).sample_path()
    g.save(tmp_path / "g.yaml")
    rc, _, err = _fsnas(capsys, "latency", "measure", tmp_path / "g.yaml", "--mode", "cudagraph", "--out",
                        tmp_path / "m.json")
    assert rc == 2 and fix in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "m.json").exists()
    tables["darts"].save(tmp_path / "darts.json")
    rc, _, err = _fsnas(capsys, "latency", "validate", tmp_path / "darts.json", "--mode", "cudagraph", "--out",
                        tmp_path / "v")
    assert rc == 2 and fix in err and not (tmp_path / "v").exists()
    rc, _, err = _fsnas(capsys, "latency", "build", "--space", cfg, "--image-shape", "1x8x8", "--compile-mode",
                        "max-autotune", "--out", tmp_path / "t.json")
    assert rc == 2 and "--compile-mode applies to --mode compile only" in err and not (tmp_path / "t.json").exists()
    with pytest.raises(ValueError, match="needs a CUDA device"):
        measure_latency(nn.ReLU(), (1, 1, 4, 4), "cpu", mode="cudagraph")


def test_compile_mode_builds_a_table_timing_each_op_compiled(tmp_path, capsys, monkeypatch):
    """The one test that compiles (3 small modules; inductor's C++ build takes seconds each)."""
    real, calls = torch.compile, []

    def spy(module, **kwargs):
        calls.append((type(module).__name__, kwargs.get("mode")))
        return real(module, **kwargs)
    monkeypatch.setattr(torch, "compile", spy)
    cfg = _space_file(tmp_path, "blocks", TINY)
    rc, out, err = _fsnas(capsys, "latency", "build", "--space", cfg, "--image-shape", "1x8x8", "--mode", "compile",
                          "--warmup", 0, "--repeats", 2, "--threads", 1, "--out", tmp_path / "t.json")
    assert rc == 0, err
    assert "(float32, batch 1, compile (default), 1 threads)" in out
    table = LatencyTable.load(tmp_path / "t.json")
    assert timing_mode(table.fingerprint) == ("compile", "default")
    assert len(table.entries) == 1 and len(table.fixed) == 2
    assert all(e["count"] == 2 and e["median_ms"] > 0 for e in [*table.entries.values(), *table.fixed.values()])
    assert len(calls) == 3 and {m for _, m in calls} == {"default"}  # every entry timed compiled


def test_whole_networks_are_timed_in_the_tables_mode(tables, tmp_path, capsys, monkeypatch):
    seen = []

    def stub(module, input_shape, device="cpu", warmup=10, repeats=50, dtype=torch.float32, channels_last=False,
             mode="eager", compile_mode=None):
        seen.append((mode, compile_mode))
        return LatencyStats(1.0, 1.0, 0.0, repeats)
    monkeypatch.setattr(validate_module, "measure_latency", stub)
    compiled = _copy(tables["darts"], mode="compile", compile_mode="max-autotune")
    g = compiled.supernet().sample_path(torch.Generator().manual_seed(0))
    measure_like_table(compiled, g, SHAPE, "cpu")
    assert seen == [("compile", "max-autotune")]
    compiled.save(tmp_path / "c.json")
    g.save(tmp_path / "g.yaml")
    rc, _, err = _fsnas(capsys, "latency", "measure", tmp_path / "g.yaml", "--table", tmp_path / "c.json")
    assert rc == 0, err
    assert seen[-1] == ("compile", "max-autotune")  # the table's mode, without --mode
    report = validate_table(compiled, samples=4, progress=False)
    assert seen[-4:] == [("compile", "max-autotune")] * 4 and report["timing"]["mode"] == "compile"


@CUDA
def test_cudagraph_times_a_graph_replay_on_cuda(monkeypatch):
    replays = []
    real = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda self: replays.append(1) or real(self))
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).cuda()
    stats = measure_latency(net, (1, 1, 16, 16), "cuda", warmup=2, repeats=5, mode="cudagraph")
    assert stats.count == 5 and stats.median_ms > 0 and len(replays) == 7
    table = build_table("blocks", TINY, (1, 8, 8), "cuda", warmup=1, repeats=3, progress=False, mode="cudagraph")
    assert table.fingerprint["mode"] == "cudagraph" and all(e["median_ms"] > 0 for e in table.entries.values())


# -- the predictor with a cost per kernel launch ---------------------------------------------------

def test_the_launch_fit_recovers_an_exact_case():
    raw = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 2.5, 4.0]
    launches = [12, 30, 20, 44, 16, 60, 8, 36]
    measured = [0.1 + 1.0 * r + 0.05 * n for r, n in zip(raw, launches)]
    assert fit_launch(raw, launches, measured) == pytest.approx((0.1, 1.0, 0.05))
    cv = cross_validated_launch(raw, launches, measured)
    assert cv == pytest.approx(measured) and accuracy_metrics(cv, measured)["rmspe"] < 1e-9
    assert kernel_launches(nn.Identity()) == 0 and kernel_launches(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU())) == 2


def test_validation_chooses_the_launch_predictor_where_it_fits_and_it_predicts(tables, monkeypatch):
    table = LatencyTable(**{**tables["darts"].__dict__})
    predictor = LatencyPredictor(table, table.supernet())

    def measure_network(genotype, image_shape, device="cpu", dtype="float32", batch=1, warmup=10, repeats=50,
                        channels_last=False, mode="eager", compile_mode=None) -> LatencyStats:
        ms = 0.1 + 1.0 * predictor.raw(genotype) + 0.05 * predictor.launches(genotype)
        return LatencyStats(ms, ms, 0.0, repeats)
    monkeypatch.setattr(validate_module, "measure_network", measure_network)
    report = validate_table(table, samples=16, seed=0, progress=False)
    assert table.predictor["kind"] == "launch" and report["launch_cv"]["rmspe"] < 1e-9
    assert min(report[k]["rmspe"] for k in ("table_sum", "calibrated_cv", "per_op_cv")) > 1e-3
    p = table.predictor
    assert (p["intercept_ms"], p["scale"], p["launch_ms"]) == pytest.approx((0.1, 1.0, 0.05))
    assert len({n["launches"] for n in report["networks"]}) > 1  # the launches vary with the architecture
    fitted = LatencyPredictor(table, table.supernet())
    for seed in (100, 101, 102):  # architectures the fit has not seen
        g = table.supernet().sample_path(torch.Generator().manual_seed(seed))
        assert fitted.predict(g) == pytest.approx(measure_network(g, SHAPE).median_ms)


def test_the_launch_predictor_expected_latency_is_the_prediction_at_one_hot_weights(tables):
    t = tables["blocks"]
    supernet = create_supernet("blocks", 1, **BLOCKS)
    t2 = LatencyTable(**{**t.__dict__, "predictor": {"kind": "launch", "intercept_ms": 0.1, "scale": 1.0,
                                                     "launch_ms": 0.05}})
    pred, plain = LatencyPredictor(t2, supernet), LatencyPredictor(t, supernet)
    g = supernet.sample_path(torch.Generator().manual_seed(1))
    assert 0 < pred.launches(g) and pred.predict(g) == pytest.approx(0.1 + plain.raw(g) + 0.05 * pred.launches(g))
    assert len({pred.launches(supernet.sample_path(torch.Generator().manual_seed(s))) for s in range(20)}) > 1
    exp = pred.expected()
    exp.backward()
    assert supernet.alpha.grad is not None and supernet.alpha.grad.abs().sum() > 0
    with torch.no_grad():
        supernet.alpha.zero_()
        for p, o in supernet.genotype_positions(g):
            supernet.alpha[p, o] = 50.0
    assert pred.expected().item() == pytest.approx(pred.predict(g), rel=1e-6)
    assert pred.expected().item() != pytest.approx(plain.expected().item() + 0.1, rel=1e-3)  # the launches count
