"""scripts/gpu_check.py (issue #23), the prepared GPU run, end to end on the CPU at smoke sizes: every section
runs (cudagraph parts skipped: no CUDA), the report holds the figures each section promises, nothing imports Ray
(the GPU machine has none), a failing section is recorded and the next one runs, the budget skips sections, and
the Omniglot pack reads back with weights_only=True."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"
SECTIONS = ("env", "latency_tables", "deployed_latency", "protonet_omniglot", "step_timing")

# runs the script as the GPU machine would see it: any import of ray fails, and the attempts are printed
NO_RAY = """
import runpy, sys
tried = []
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            tried.append(name)
            raise ImportError("no ray on the GPU machine")
sys.meta_path.insert(0, NoRay())
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("RAY tried", tried, "loaded", "ray" in sys.modules, flush=True)
"""


def run_script(*args, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("OUT", None)
    return subprocess.run([sys.executable, "-c", NO_RAY, str(SCRIPT), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = run_script("run", "--smoke", "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), out, proc.stdout


def test_every_section_runs_at_smoke_size_without_ray(smoke):
    report, out, stdout = smoke
    assert tuple(report["sections"]) == SECTIONS and report["smoke"] is True
    for name, rec in report["sections"].items():
        assert rec["status"] == "ok", (name, rec.get("reason"), rec.get("traceback"))
        assert rec["seconds"] <= rec["cap_s"]
        for row in rec.get("rows", []):  # every part ran or says why not
            assert row["status"] == "ok" or (row["status"] == "skipped" and row["reason"]), row
    assert "RAY tried [] loaded False" in stdout
    env = report["sections"]["env"]
    assert env["torch"] == torch.__version__ and env["device_type"] == "cpu" and env["date"]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md", "latency_tables.json",
                                                     "protonet_metrics.jsonl"]


def test_the_latency_tables_are_built_validated_and_scored(smoke):
    report, out, _ = smoke
    rows = report["sections"]["latency_tables"]["rows"]
    assert {(r["space"], r["batch"], r["mode"]) for r in rows} == {
        (s, b, m) for s in ("blocks", "elastic") for b in (1, 4) for m in ("eager", "cudagraph")}
    for r in rows:
        if r["mode"] == "cudagraph":
            assert (r["status"], r["reason"]) == ("skipped", "needs CUDA")
            continue
        assert r["status"] == "ok" and r["entries"] > 0 and r["samples"] == 6
        assert 0 <= r["within_10pct"] <= 1 and -1 <= r["kendall_tau"] <= 1 and r["rmspe"] >= 0
        assert r["predictor"] in ("sum", "calibrated", "per_op", "launch") and r["build_s"] >= 0
        assert r["validation_s"] >= 0 and r["sum_rmspe"] >= 0
    tables = json.loads((out / "latency_tables.json").read_text())
    assert sorted(tables) == sorted(f"{s}-b{b}-eager" for s in ("blocks", "elastic") for b in (1, 4))
    assert len(tables["elastic-b4-eager"]["validation"]["networks"]) == 6


def test_deployed_latency_gives_ratios_to_conv4_and_compiles_one_tiny_network(smoke):
    report, _, _ = smoke
    rec = report["sections"]["deployed_latency"]
    names = [n["name"] for n in rec["networks"]]
    assert names == ["conv4", "resnet12", "darts_cpu_seed1", "elastic_drawn1", "elastic_drawn2"]
    eager = [r for r in rec["rows"] if r["mode"] == "eager"]
    assert len(eager) == 10 and all(r["status"] == "ok" and r["median_ms"] > 0 for r in eager)
    assert all(r["ratio_to_conv4"] == 1.0 for r in eager if r["network"] == "conv4")
    assert all(r["ratio_to_conv4"] > 0 for r in eager)
    compiled = [r for r in rec["rows"] if r["mode"] == "compile" and r["status"] == "ok"]
    assert [(r["network"], r["batch"]) for r in compiled] == [("elastic_drawn2", 1)] and compiled[0]["median_ms"] > 0
    assert rec["eager_over_cudagraph"] == {}  # no CUDA graphs on a CPU


def test_protonet_trains_and_tests_with_accuracies_and_times(smoke):
    report, out, _ = smoke
    rec = report["sections"]["protonet_omniglot"]
    assert rec["dataset"]["name"] == "synthetic" and rec["train"]["steps"] == 6
    assert rec["train"]["seconds"] > 0 and rec["train"]["gpu_minutes"] >= 0 and rec["train"]["episodes_per_second"] > 0
    assert [(r["n_way"], r["k_shot"], r["episodes"]) for r in rec["results"]] == [(5, 1, 10), (20, 1, 10)]
    for r in rec["results"]:
        assert 0 < r["accuracy"] <= 1 and r["ci95"] >= 0
    metrics = [json.loads(line) for line in (out / "protonet_metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["phase"] == "train"] == [2, 4, 6]


def test_step_timing_compares_bfloat16_with_float32(smoke):
    report, _, _ = smoke
    rec = report["sections"]["step_timing"]
    assert [(r["step"], r["precision"]) for r in rec["rows"]] == [
        (s, p) for s in ("darts_supernet", "protonet_conv4", "maml2_conv4") for p in ("fp32", "bf16")]
    assert all(r["status"] == "ok" and r["median_ms"] > 0 and r["steps"] == 2 for r in rec["rows"])
    assert set(rec["bf16_over_fp32"]) == {"darts_supernet", "protonet_conv4", "maml2_conv4"}
    assert all(v > 0 for v in rec["bf16_over_fp32"].values())


def test_the_markdown_report_has_a_part_per_section(smoke):
    _, out, stdout = smoke
    md = (out / "gpu_check.md").read_text()
    for name in SECTIONS:
        assert f"## {name}: ok" in md
    assert "| space | batch | mode | status |" in md and "| n_way | k_shot | n_query | accuracy |" in md
    assert "## step_timing: ok" in stdout  # the brief tables end the output


def test_a_failing_section_is_recorded_and_the_budget_skips_what_does_not_fit(tmp_path):
    proc = run_script("run", "--smoke", "--device", "cpu", "--out", tmp_path, "--budget-s", 50, "--genotype",
                      tmp_path / "missing.yaml", "--sections", "deployed_latency,env,protonet_omniglot", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sections = json.loads((tmp_path / "gpu_check.json").read_text())["sections"]
    assert list(sections) == ["deployed_latency", "env", "protonet_omniglot"]
    failed = sections["deployed_latency"]
    assert failed["status"] == "error" and "missing.yaml" in failed["reason"] and failed["traceback"]
    assert sections["env"]["status"] == "ok"
    skipped = sections["protonet_omniglot"]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("budget: ")
    assert "RAY tried [] loaded False" in proc.stdout


def test_the_pack_round_trips_through_a_weights_only_load(tmp_path):
    from meta.data import load_dataset
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    ds = load_dataset("synthetic", image_size=12, train_classes=4, val_classes=2, test_classes=3, images_per_class=3)
    ds.train_rotations = 4
    torch.save(gpu_check.pack_blob(ds, "test"), tmp_path / "pack.pt")
    blob = torch.load(tmp_path / "pack.pt", weights_only=True)
    assert blob["images"].dtype == torch.uint8
    back = gpu_check.load_pack(tmp_path / "pack.pt")
    assert torch.equal(back.images, ds.images) and torch.equal(back.labels, ds.labels)
    assert (back.class_names, back.splits, back.mean, back.std, back.train_rotations) == \
        (ds.class_names, ds.splits, ds.mean, ds.std, 4)
    assert back.split("train").num_classes == 16
    torch.save({"format": 0}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a gpu_check pack"):
        gpu_check.load_pack(tmp_path / "other.pt")
