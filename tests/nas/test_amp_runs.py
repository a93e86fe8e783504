"""train.amp and search.amp end to end: a retrain and a supernet search in bfloat16 autocast run, learn, and
write float32 weights; evaluation stays float32."""

import json

import torch
import yaml

from nas import cli

from .test_cli import TINY
from .test_elastic_search import ELASTIC


def test_a_retrain_in_mixed_precision_learns_and_saves_float32_weights(tmp_path):
    config = tmp_path / "amp.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "amp": True, "steps": 40,
                                                        "options": {"lr": 0.005}}}))
    assert cli.main(["-q", "run", str(config), "--out", str(tmp_path / "run")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r.get("phase") == "train"]
    assert losses[-1] < losses[0]
    state = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    tensors = [v for v in state["model"].values() if torch.is_floating_point(v)]
    assert tensors and all(v.dtype == torch.float32 for v in tensors)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert all(0.2 < r["accuracy"] <= 1.0 for r in summary["results"])


def test_a_supernet_search_in_mixed_precision_runs_with_finite_losses(tmp_path):
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**ELASTIC, "search": {**ELASTIC["search"], "amp": True}}))
    assert cli.main(["-q", "search", str(config), "--out", str(tmp_path / "run")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r.get("phase") == "search"]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
    assert (tmp_path / "run" / "genotype.yaml").is_file()
