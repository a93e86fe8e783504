"""The bodies of ``fsnas search`` and ``fsnas retrain`` / ``fsnas run`` on an opened run folder, shared by the
command line and by Ray Tune trials (``nas.tuning``), so a trial writes exactly the folder the plain command
would."""

from __future__ import annotations

import torch

from meta.data import FewShotDataset

from .config import RunConfig
from .runs import RunDir


def search_job(cfg: RunConfig, run: RunDir, ds: FewShotDataset, device: torch.device, progress: bool = True) -> dict:
    from .pipeline import input_spec
    from .search.loop import run_search
    found = run_search(cfg, run, ds, device, progress=progress)
    summary = {"command": "search", "run": str(run.path), **found, "input": input_spec(ds)}
    run.write_summary(summary)
    return summary


def retrain_job(cfg: RunConfig, run: RunDir, ds: FewShotDataset, device: torch.device, command: str,
                searching: bool, evaluate_after: bool = True, progress: bool = True) -> dict:
    """Meta-train (after a search when ``searching``: ``fsnas run`` with search.enabled) and evaluate."""
    from .pipeline import retrain
    found = {}
    if searching:  # search, then retrain the architecture it found
        from .search.loop import GENOTYPE_FILE, run_search
        found = run_search(cfg, run, ds, device, progress=progress)
        cfg.model.genotype = str(run.path / GENOTYPE_FILE)
    summary = retrain(cfg, run, ds, device, progress=progress, evaluate_after=evaluate_after)
    summary["command"] = command
    if found:
        summary["search"] = found
    run.write_summary(summary)
    return summary
