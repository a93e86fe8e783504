"""Every finished trial's network timed again by the driver, one trial at a time, after the experiment.

A trial times its network at its end while other trials still run: on this 2-core machine the SPOS latency
sweep's trials reported 61-102 ms for networks that time 36-53 ms alone, which put the wrong trials on the
Pareto front.  Timed here, each network has the machine to itself; the trial's own figure stays in its summary.
A trial is re-timed only where its timing can be repeated: a search's latency on a machine its table accepts
(same device, software, threads), a batch-1 timing on its device type.  Results go to ``latency_retimed.json``
in the experiment (kept across ``--resume``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..latency import LatencyTable, LatencyTableError, measure_network
from ..latency.measure import cpu_threads
from ..runs import RunDir, atomic_write_bytes
from .trial import TRIAL_FILE

RETIMED_FILE = "latency_retimed.json"
log = logging.getLogger(__name__)


def _timing_settings(summary: dict) -> dict | None:
    """How the trial timed its network (device, batch, dtype, threads, warmup, repeats, channels-last), where
    this machine can time it the same way; None otherwise."""
    report = summary.get("latency") or summary.get("search", {}).get("latency")
    if report:
        try:
            table = LatencyTable.load(report["table"])
        except (OSError, LatencyTableError, ValueError, KeyError):
            return None
        fp = table.fingerprint
        device = torch.device(fp["device_type"])
        if device.type == "cuda" and not torch.cuda.is_available():
            return None
        try:
            table.check_device(device, threads=fp.get("threads"))
        except LatencyTableError:
            return None
        return {"device": device, "batch": fp["batch"], "dtype": fp["dtype"], "threads": fp.get("threads"),
                "warmup": table.measure["warmup"], "repeats": table.measure["repeats"],
                "channels_last": fp.get("channels_last", False), "label": fp["device"]}
    timed = summary.get("tune_latency")
    if timed:
        device = torch.device(timed["device"])
        if device.type == "cuda" and not torch.cuda.is_available():
            return None
        return {"device": device, "batch": 1, "dtype": "float32", "threads": timed.get("threads"), "warmup": 10,
                "repeats": 50, "channels_last": True, "label": str(device)}
    return None


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
        settings = _timing_settings(summary)
        if settings is None or "input" not in summary:
            log.warning("trial %s: its latency cannot be timed the same way here; its in-trial figure is kept",
                        trial_id)
            continue
        device = settings["device"]
        with cpu_threads(settings["threads"] if device.type == "cpu" else None):
            stats = measure_network(load_genotype(run.path / "genotype.yaml"), summary["input"]["shape"], device,
                                    settings["dtype"], settings["batch"], settings["warmup"], settings["repeats"],
                                    settings["channels_last"])
        done[trial_id] = {"median_ms": stats.median_ms, "batch": settings["batch"], "device": settings["label"],
                          "threads": settings["threads"], "measured": stats.to_dict()}
        atomic_write_bytes(path, json.dumps(done, indent=2).encode())  # a kill loses one timing at most
    return done
