"""An experiment's results, read back from its trials' run folders: a table of every trial (its values,
test accuracy with CI, last meta-validation accuracy, latency, parameters, status) as results.json / .md /
.csv, and the Pareto front of accuracy against latency (pareto.md, pareto.png; ``fsnas export --pick
pareto:K EXPERIMENT`` exports from it)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..config import RunConfig
from ..export.pick import pareto_front
from ..files import atomic_write_bytes, write_json
from ..runs import RunDir
from .retime import RETIMED_FILE
from .trial import DIVERGED_KEY, TRIAL_FILE, latency_of, search_score, validation_accuracy

RESULTS_FILE, TABLE_FILE = "results.json", "results.md"


def trial_rows(exp: Path, errors: dict[str, str], asha: bool, use_retimed: bool = True) -> list[dict]:
    rows, seen = [], set()
    # a re-timing left by an earlier run of the experiment is not used once the config turns re-timing off
    retimed = json.loads((exp / RETIMED_FILE).read_text()) if use_retimed and (exp / RETIMED_FILE).is_file() else {}
    for trial_file in sorted((exp / "runs").glob(f"*/{TRIAL_FILE}")):
        run = RunDir(trial_file.parent)
        trial = json.loads(trial_file.read_text())
        seen.add(trial["trial_id"])
        vals = [validation_accuracy(r) for r in run.read_metrics()]
        vals = [v for v in vals if v is not None]
        row = {"trial": trial["trial_id"], "run": str(run.path), "values": trial["overrides"],
               "val_accuracy": vals[-1] if vals else None, "accuracy": None, "ci95": None, "latency_ms": None,
               "latency_source": None, "params": None}
        if run.summary_path.is_file():
            summary = run.read_summary()
            ms, source = latency_of(summary)
            row.update(status="finished", accuracy=summary.get("accuracy"), ci95=summary.get("ci95"),
                       latency_ms=ms, latency_source=source,
                       params=summary.get("parameters", summary.get("params")))
            again = retimed.get(trial["trial_id"])
            if again:
                row.update(latency_ms=again["median_ms"], latency_in_trial_ms=ms,
                           latency_source=f"measured, batch {again['batch']}, {again['device']}, one trial at a "
                                          f"time after the experiment")
            if row["val_accuracy"] is None:
                row["val_accuracy"] = search_score(summary)
            if summary.get("results"):
                row["task"] = "{n_way}-way {k_shot}-shot".format(**summary["results"][0])
        elif trial.get(DIVERGED_KEY):
            row["status"] = f"diverged: {trial[DIVERGED_KEY]}"
        elif trial["trial_id"] in errors:
            row["status"] = f"failed: {errors[trial['trial_id']]}"
        else:
            row["status"] = "stopped early (ASHA)" if asha else "unfinished"
        rows.append(row)
    for trial_id, error in errors.items():
        if trial_id not in seen:
            rows.append({"trial": trial_id, "run": None, "values": {}, "status": f"failed: {error}",
                         "val_accuracy": None, "accuracy": None, "ci95": None, "latency_ms": None,
                         "latency_source": None, "params": None})
    return rows


def write_results(exp: Path, cfg: RunConfig, parsed: dict, errors: dict[str, str], seconds: float) -> dict:
    keys = list(parsed)
    metric = cfg.tune.metric
    rows = trial_rows(exp, errors, cfg.tune.asha.enabled, cfg.tune.retime_latency)
    # best first by the metric; trials without it (stopped early, failed) after, by validation accuracy
    rows.sort(key=lambda r: (r[metric] is None, -(r[metric] or 0.0), -(r["val_accuracy"] or 0.0), r["trial"]))
    scored = [i for i, r in enumerate(rows) if r[metric] is not None and r["latency_ms"] is not None]
    front = [scored[j] for j in pareto_front([{"score": rows[i][metric], "params": rows[i]["latency_ms"]}
                                              for i in scored])]
    report = {"experiment": str(exp), "job": cfg.tune.job, "metric": metric, "wall_seconds": round(seconds, 1),
              "space": {k: {kind: values} for k, (kind, values) in parsed.items()}, "trials": rows,
              "pareto": [rows[i]["trial"] for i in front]}

    def pct(v):
        return "—" if v is None else f"{100 * v:.2f}"
    head = ["trial", *keys, "status", "test accuracy (%)", "val accuracy (%)", "latency (ms)", "parameters"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        acc = "—" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}"
        lat = "—" if r["latency_ms"] is None else f"{r['latency_ms']:.3f}"
        lines.append("| " + " | ".join([r["trial"], *(str(r["values"].get(k, "")) for k in keys), r["status"], acc,
                                        pct(r["val_accuracy"]), lat, f"{r['params']:,}" if r["params"] else "—"])
                     + " |")
    sources = sorted({r["latency_source"] for r in rows if r["latency_source"]})
    notes = [f"Wall time {seconds:.0f} s; ranked by {metric}."]
    if sources:
        notes.append("Latency: " + "; ".join(sources) + ".")
    report["table_md"] = "\n".join(lines + [""] + notes)
    atomic_write_bytes(exp / TABLE_FILE, (report["table_md"] + "\n").encode())
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial", *keys, "status", "accuracy", "ci95", "val_accuracy", "latency_ms", "params", "run"])
    for r in rows:
        writer.writerow([r["trial"], *(r["values"].get(k, "") for k in keys), r["status"], r["accuracy"], r["ci95"],
                         r["val_accuracy"], r["latency_ms"], r["params"], r["run"]])
    atomic_write_bytes(exp / "results.csv", buf.getvalue().encode())
    pareto_lines = [f"Pareto front of {metric} against latency ({len(front)} of {len(scored)} trials with both):", "",
                    "| trial | " + " | ".join(keys) + f" | {metric} (%) | latency (ms) |",
                    "|" + " --- |" * (len(keys) + 3)]
    for i in front:
        r = rows[i]
        pareto_lines.append(f"| {r['trial']} | " + " | ".join(str(r["values"].get(k, "")) for k in keys)
                            + f" | {pct(r[metric])} | {r['latency_ms']:.3f} |")
    atomic_write_bytes(exp / "pareto.md", ("\n".join(pareto_lines) + "\n").encode())
    if scored:
        plot_front(exp / "pareto.png", rows, scored, front, metric)
    write_json(exp / RESULTS_FILE, report)
    return report


def plot_front(path: Path, rows: list[dict], scored: list[int], front: list[int], metric: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.scatter([rows[i]["latency_ms"] for i in scored], [100 * rows[i][metric] for i in scored], c="0.6",
               label="trials")
    ax.plot([rows[i]["latency_ms"] for i in front], [100 * rows[i][metric] for i in front], "o-", c="C3",
            label="Pareto front")
    for i in front:
        ax.annotate(rows[i]["trial"][-5:], (rows[i]["latency_ms"], 100 * rows[i][metric]), fontsize=7)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel(f"{metric} (%)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
