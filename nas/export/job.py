"""``fsnas export SOURCE --out DIR``: resolve the source, pick candidates, write one folder per model."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from ..files import check_new_output, write_json
from .pick import parse_pick, pick_ranks, spread
from .sources import ExportError, candidate_scores, from_architecture, from_retrain_run, from_search_run
from .writer import CARD_FILE, write_export


def from_experiment(path: Path, pick: str, overrides: list[str]):
    """Trials of an fsnas tune experiment: ``best`` / ``top:K`` by its metric, ``pareto:K`` from its Pareto front
    of accuracy against latency (K spread along it, both ends included)."""
    results = json.loads((path / "results.json").read_text())
    kind, k = parse_pick(pick)
    finished = [t for t in results["trials"] if t["status"] == "finished" and t.get(results["metric"]) is not None]
    if kind == "pareto":
        by_id = {t["trial"]: t for t in finished}
        chosen = spread([by_id[t] for t in results["pareto"] if t in by_id], k, lambda t: t[results["metric"]])
    else:
        chosen = finished[:k]  # results.json lists trials best first
    if not chosen:
        raise ExportError(f"{path}: no finished trial with {results['metric']}"
                          f"{' and latency' if kind == 'pareto' else ''} to export; resume it with fsnas tune --resume")
    items = []
    for rank, trial in enumerate(chosen, start=1):
        run = Path(trial["run"])
        item = (from_retrain_run(run, overrides) if (run / "model.pt").is_file()
                else from_search_run(run, overrides, [1]))[0]
        item.rank = rank
        item.provenance["tune_trial"] = {"experiment": str(path), "trial": trial["trial"], "values": trial["values"]}
        items.append(item)
    return items


def resolve(source: str, pick: str, overrides: list[str], in_channels: int, image_size: int, seed: int):
    path = Path(source)
    if not path.is_dir():
        parse_pick(pick)
        return from_architecture(source, in_channels, image_size, seed)
    if (path / CARD_FILE).is_file():
        raise ExportError(f"{path} is already an export folder; copy it, or export the run it came from")
    if (path / "results.json").is_file() and (path / "tune").is_dir():
        return from_experiment(path, pick, overrides)
    if not (path / "config.yaml").is_file():
        raise ExportError(f"{path} is not a run folder (no config.yaml); give a folder fsnas search, retrain or "
                          f"run wrote, a genotype file or a backbone name")
    if (path / "model.pt").is_file():  # retrain / run: one trained model
        kind, k = parse_pick(pick)
        if k > 1:
            raise ExportError(f"--pick {pick}: {path} holds one trained model; use --pick best")
        return from_retrain_run(path, overrides)
    rows = candidate_scores(path)
    if not rows:
        raise ExportError(f"{path} holds no finished search (no candidates.json) and no trained model (no model.pt); "
                          f"finish it first with --resume {path}")
    return from_search_run(path, overrides, pick_ranks(rows, pick))


def export(source: str, out: str | Path, pick: str = "best", device: torch.device | str = "cpu",
           overrides: list[str] = (), latency_batch: int = 80, in_channels: int = 1, image_size: int = 28,
           seed: int = 0, latency_repeats: int = 50) -> list[dict]:
    """Export ``source`` (a run folder, genotype file or backbone name) to ``out``; the model cards written.

    One model: ``out`` is its folder.  Several (``top:K``/``pareto:K``): ``out/rank<R>/`` each, plus
    ``out/index.json``."""
    out = Path(out)
    check_new_output(out)
    items = resolve(source, pick, list(overrides), in_channels, image_size, seed)
    device = torch.device(device)
    if len(items) == 1:
        return [write_export(items[0], out, device, latency_batch, str(source), latency_repeats)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        cards = [write_export(item, tmp / f"rank{item.rank}", device, latency_batch, str(source), latency_repeats)
                 for item in items]
        index = [{"folder": f"rank{item.rank}", "rank": item.rank, "search_score": c["search_score"],
                  "parameters": c["parameters"], "macs": c["macs"],
                  "latency_ms_batch_1": c["latency"]["batch_1"]["median_ms"]} for item, c in zip(items, cards)]
        write_json(tmp / "index.json", {"pick": pick, "models": index})
        if out.exists():
            out.rmdir()
        tmp.rename(out)
        return cards
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
