"""Every finished trial's network timed again by the driver, one trial at a time, after the experiment.

A trial times its network at its end while other trials still run: on this 2-core machine the SPOS latency
sweep's trials reported 61-102 ms for networks that time 36-53 ms alone, which put the wrong trials on the
Pareto front.  Timed here, each network has the machine to itself; the trial's own figure stays in its summary.
A trial is re-timed only where its timing can be repeated: a search's latency on a machine its table accepts
(same device, software, threads), a batch-1 timing on the same kind of device with the same software
(a trial on another kind of node of a Ray cluster keeps its own figure).  Results go to ``latency_retimed.json``
in the experiment (kept across ``--resume``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..latency import LatencyTable, LatencyTableError, measure_like_table
from ..latency.fingerprint import differences_here
from ..latency.measure import cpu_threads
from ..files import write_json
from ..runs import RunDir
from .trial import TRIAL_FILE, batch1_latency

RETIMED_FILE = "latency_retimed.json"
log = logging.getLogger(__name__)


def _usable(device: torch.device) -> bool:
    return device.type != "cuda" or torch.cuda.is_available()


def _table_here(path: str) -> LatencyTable | None:
    """The search's latency table, if this machine is the one it was measured on."""
    try:
        table = LatencyTable.load(path)
        device = torch.device(table.fingerprint["device_type"])
        if not _usable(device):
            return None
        table.check_device(device, threads=table.fingerprint.get("threads"))
        return table
    except (OSError, LatencyTableError, ValueError, KeyError):
        return None


def retime(summary: dict, genotype) -> dict | None:
    """The trial's network timed again as the trial timed it; None where that cannot be done here."""
    shape = summary["input"]["shape"]
    report = summary.get("latency") or summary.get("search", {}).get("latency")
    if report:
        table = _table_here(report["table"])
        if table is None:
            return None
        fp = table.fingerprint
        stats = measure_like_table(table, genotype, shape, fp["device_type"])
        return {"median_ms": stats.median_ms, "batch": fp["batch"], "device": fp["device"],
                "threads": fp.get("threads"), "measured": stats.to_dict()}
    timed = summary.get("tune_latency")
    if not timed or not _usable(torch.device(timed["device"])):
        return None
    device = torch.device(timed["device"])
    if "fingerprint" in timed and differences_here(timed["fingerprint"], device, timed.get("threads")):
        return None  # the trial ran on another kind of machine (a Ray cluster's node)
    with cpu_threads(timed.get("threads") if device.type == "cpu" else None):
        stats = batch1_latency(genotype, shape, device)
    return {"median_ms": stats.median_ms, "batch": 1, "device": str(device), "threads": timed.get("threads"),
            "measured": stats.to_dict()}


def retime_trials(exp: Path) -> dict[str, dict]:
    """Time each finished trial's network, serially; returns (and writes) {trial id: timing}."""
    from search_spaces import load_genotype
    path = exp / RETIMED_FILE
    done = json.loads(path.read_text()) if path.is_file() else {}
    for trial_file in sorted((exp / "runs").glob(f"*/{TRIAL_FILE}")):
        run = RunDir(trial_file.parent)
        trial_id = json.loads(trial_file.read_text())["trial_id"]
        if trial_id in done or not run.summary_path.is_file() or not (run.path / "genotype.yaml").is_file():
            continue
        summary = run.read_summary()
        timing = retime(summary, load_genotype(run.path / "genotype.yaml")) if "input" in summary else None
        if timing is None:
            log.warning("trial %s: its latency cannot be timed the same way here; its in-trial figure is kept",
                        trial_id)
            continue
        done[trial_id] = timing
        write_json(path, done)  # a kill loses one timing at most
    return done
