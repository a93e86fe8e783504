"""gpu_check.md: the report of scripts/gpu_check.py as readable tables, one part per section."""

from __future__ import annotations

COLUMNS = {
    "latency_tables": ("space", "batch", "mode", "status", "entries", "build_s", "predictor", "within_10pct",
                       "kendall_tau", "rmspe", "sum_within_10pct", "sum_kendall_tau", "validation_s", "reason"),
    "deployed_latency": ("network", "input", "batch", "mode", "status", "median_ms", "ratio_to_conv4", "seconds",
                         "reason"),
    "step_timing": ("step", "precision", "status", "median_ms", "min_ms", "steps", "seconds", "reason"),
}
BRIEF = {"latency_tables": ("space", "batch", "mode", "status", "within_10pct", "kendall_tau", "rmspe", "predictor"),
         "deployed_latency": ("network", "batch", "mode", "status", "median_ms", "ratio_to_conv4"),
         "step_timing": ("step", "precision", "status", "median_ms")}


def cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "x".join(map(str, v)) if all(isinstance(x, int) for x in v) else str(v)
    return str(v).replace("|", "/").replace("\n", " ")


def table(rows: list[dict], columns) -> list[str]:
    columns = [c for c in columns if any(c in r for r in rows)]
    if not rows or not columns:
        return []
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return lines + [""]


def mapping(d: dict, key: str = "key", value: str = "value") -> list[str]:
    return table([{key: k, value: v} for k, v in d.items()], (key, value))


def section(name: str, rec: dict, brief: bool) -> list[str]:
    head = f"## {name}: {rec.get('status')}" + (f" ({rec['seconds']} s of {rec.get('cap_s')} s)"
                                               if "seconds" in rec else "")
    lines = [head, ""]
    if rec.get("reason"):
        lines += [f"{rec['reason']}", ""]
    if name == "env":
        return lines + mapping({k: v for k, v in rec.items() if k not in ("status", "seconds", "cap_s")})
    if rec.get("rows"):
        lines += table(rec["rows"], (BRIEF if brief else COLUMNS).get(name, sorted(rec["rows"][0])))
    for key in ("eager_over_cudagraph", "bf16_over_fp32"):
        if rec.get(key):
            lines += mapping(rec[key], "network" if key.startswith("eager") else "step", key)
    if name == "protonet_omniglot":
        if rec.get("train"):
            lines += mapping(rec["train"], "train", "value")
        elif rec.get("progress"):
            lines += mapping(rec["progress"], "progress", "value")
        if rec.get("results"):
            lines += table(rec["results"], ("n_way", "k_shot", "n_query", "accuracy", "ci95", "episodes", "seconds"))
    if not brief and rec.get("traceback"):
        lines += ["```", *rec["traceback"], "```", ""]
    return lines


def markdown(report: dict, brief: bool = False) -> str:
    """The report as Markdown; ``brief``: the few columns printed at the end of the run's output."""
    lines = [f"# gpu_check: {report.get('device')}{' (smoke)' if report.get('smoke') else ''}, "
             f"{report.get('elapsed_s', 0)} s of a {report.get('budget_s')} s budget", ""]
    for name, rec in report.get("sections", {}).items():
        lines += section(name, rec, brief)
    return "\n".join(lines) + "\n"
