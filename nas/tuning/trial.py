"""What one Ray Tune trial runs: an ordinary fsnas run folder (``EXPERIMENT/runs/<trial id>``) of the
experiment's config with the trial's values, reporting meta-validation accuracy to Tune as it is logged
(for ASHA) with the run folder as the checkpoint, and its final figures at the end.

Restarted trials (a retry, or ``fsnas tune --resume`` after a killed driver) resume their run folder; where
the folder is not on this node (a cluster without shared storage) it is restored from Tune's checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..checks import load_config
from ..errors import Diverged
from ..files import write_json
from ..runs import RunDir
from .space import with_overrides

TRIAL_FILE = "trial.json"
DIVERGED_KEY = "diverged"  # in trial.json: the message of a trial whose training diverged


def validation_accuracy(record: dict) -> float | None:
    """The meta-validation accuracy in a metrics record: retraining's 'val' phase, a DARTS/GDAS search step."""
    if record.get("phase") == "val":
        return record.get("accuracy")
    return record.get("val_accuracy")


def latency_of(summary: dict) -> tuple[float | None, str | None]:
    """(ms, source) from a finished run's summary: a search's latency report (measured on its table's device
    and settings), else the end-to-end batch-1 time the trial measured."""
    report = summary.get("latency") or summary.get("search", {}).get("latency")
    if report:
        return report["measured_ms"], f"measured, batch {report['batch']}, {report['device']}"
    timed = summary.get("tune_latency")
    if timed:
        return timed["median_ms"], f"measured, batch 1, {timed['device']}, at the end of the trial (other trials may be running)"
    return None, None


def search_score(summary: dict) -> float | None:
    """A search's one-shot validation score (a search summary, or a run's search part); None for a retrain."""
    return summary.get("score", summary.get("search", {}).get("score"))


def final_metrics(summary: dict, last_val: float | None) -> dict:
    ms, _ = latency_of(summary)
    val = search_score(summary) if last_val is None else last_val
    return {"fsnas_final": True, "accuracy": summary.get("accuracy"), "ci95": summary.get("ci95"),
            "val_accuracy": val, "latency_ms": ms,
            "params": summary.get("parameters", summary.get("params"))}


def run_trial(config: dict, spec: dict) -> None:
    """Ray Tune function trainable: ``config['overrides']`` (dotted key -> value) on ``spec['base']``."""
    from ray import tune

    from ..jobs import retrain_job, search_job
    from ..pipeline import prepare
    logging.getLogger("nas").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(spec["threads"])))
    trial_id = tune.get_context().get_trial_id()
    path = Path(spec["experiment"]) / "runs" / trial_id
    checkpoint = tune.get_checkpoint()
    if not (path / "config.yaml").is_file() and checkpoint is not None:
        checkpoint.to_directory(str(path))  # a restarted trial on a node without the folder
    overrides = dict(config.get("overrides", {}))
    if (path / "config.yaml").is_file():
        run = RunDir.resume(path)
        cfg = load_config(run.config_path)
    else:
        cfg = with_overrides(spec["base"], overrides)
        cfg.name = trial_id
        run = RunDir.create(cfg, path)
    trial = {"trial_id": trial_id, "overrides": overrides, "job": spec["job"]}
    write_json(path / TRIAL_FILE, trial)
    last = {"val": None}

    def report(record: dict) -> None:
        acc = validation_accuracy(record)
        if acc is None:
            return
        last["val"] = acc
        tune.report({"val_accuracy": acc, "step": record.get("step"), "phase": record.get("phase")},
                    checkpoint=tune.Checkpoint.from_directory(str(path)))

    if run.summary_path.is_file():  # finished before the driver was killed: report it again
        tune.report(final_metrics(run.read_summary(), None))
        return
    job = spec["job"]
    searching = job == "search" or (job == "run" and cfg.search.enabled)
    prepared = prepare(cfg, train=job != "search", test=job != "search", search=searching)
    run.listeners.append(report)
    try:
        if job == "search":
            summary = search_job(cfg, run, prepared, progress=False)
        else:
            summary = retrain_job(cfg, run, prepared, job, progress=False)
            if latency_of(summary)[0] is None:
                summary["tune_latency"] = measured_latency(run, prepared.ds, prepared.device)
                run.write_summary(summary)
    except Diverged as exc:
        # an ending, not a failure: a retry (tune.max_failures) from the last good checkpoint with the same
        # values would diverge again, so the trial ends here and the results say why
        write_json(path / TRIAL_FILE, {**trial, DIVERGED_KEY: str(exc)})
        return
    tune.report(final_metrics(summary, last["val"]))


def batch1_latency(genotype, image_shape, device: torch.device):
    """End-to-end batch-1 latency of ``genotype``'s network (channels-last, as fsnas runs it; timing does not
    depend on the weights, so a fresh copy is timed)."""
    from ..latency import measure_network
    return measure_network(genotype, image_shape, device, "float32", 1, warmup=10, repeats=50, channels_last=True)


def measured_latency(run: RunDir, ds, device: torch.device) -> dict:
    from search_spaces import load_genotype
    from ..latency.fingerprint import device_fingerprint
    stats = batch1_latency(load_genotype(run.path / "genotype.yaml"), ds.image_shape, device)
    threads = torch.get_num_threads()
    return {"median_ms": stats.median_ms, "device": str(device), "threads": threads,
            "fingerprint": device_fingerprint(device, "float32", 1, threads, channels_last=True)}
