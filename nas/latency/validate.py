"""Is a latency table right?  Sample architectures of its space, time each whole network the way the table
was timed, and compare with the table's prediction: RMSPE, the share within 5% and 10%, Kendall tau and
Spearman rho.  Two fitted predictors (an affine map of the table sum; an intercept plus a scale per op type),
fitted to minimise relative error, are scored by 2-fold cross-validation; the table keeps whichever of
them and the plain sum has the lowest RMSPE."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from search_spaces import build_network

from ..search.ranking import kendall_tau, spearman_rho
from .fingerprint import DTYPES
from .measure import LatencyStats, cpu_threads, measure_latency
from .table import LatencyPredictor, LatencyTable


def measure_network(genotype, image_shape: Sequence[int], device: torch.device | str = "cpu", dtype: str = "float32",
                    batch: int = 1, warmup: int = 10, repeats: int = 50, channels_last: bool = False) -> LatencyStats:
    """End-to-end latency of the stand-alone network of ``genotype``, timed as table entries are."""
    net = build_network(genotype, in_channels=image_shape[0]).to(device, DTYPES[dtype])
    return measure_latency(net, (batch, *image_shape), device, warmup, repeats, DTYPES[dtype], channels_last)


def measure_like_table(table: LatencyTable, genotype, image_shape: Sequence[int],
                       device: torch.device | str) -> LatencyStats:
    """The stand-alone network of ``genotype`` timed as ``table``'s entries were: its dtype, batch, memory
    format, warmup, repeats and (on CPU) threads."""
    fp, device = table.fingerprint, torch.device(device)
    with cpu_threads(fp.get("threads") if device.type == "cpu" else None):
        return measure_network(genotype, image_shape, device, fp["dtype"], fp["batch"], table.measure["warmup"],
                               table.measure["repeats"], fp.get("channels_last", False))


def accuracy_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict:
    rel = [(p - m) / m for p, m in zip(predicted, measured)]
    return {"rmspe": math.sqrt(sum(r * r for r in rel) / len(rel)),
            "mean_relative_error": sum(rel) / len(rel),
            "within_5pct": sum(abs(r) <= 0.05 for r in rel) / len(rel),
            "within_10pct": sum(abs(r) <= 0.10 for r in rel) / len(rel),
            "kendall_tau": kendall_tau(predicted, measured), "spearman_rho": spearman_rho(predicted, measured)}


def fit_affine(raw: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """(intercept, scale) minimising the squared relative error of intercept + scale * raw."""
    y = torch.tensor(measured, dtype=torch.float64)
    a = torch.stack([1 / y, torch.tensor(raw, dtype=torch.float64) / y], dim=1)
    sol = torch.linalg.lstsq(a, torch.ones_like(y).unsqueeze(1)).solution.squeeze(1)
    return float(sol[0]), float(sol[1])


def fit_per_op(by_op: Sequence[Sequence[float]], measured: Sequence[float]) -> tuple[float, list[float]]:
    """(intercept, scale per op type) minimising the squared relative error of intercept + sum_k scale_k *
    by_op[k]; op types no sample uses keep scale 1."""
    x = torch.tensor(by_op, dtype=torch.float64)
    used = (x.abs().sum(0) > 0).nonzero().flatten()
    y = torch.tensor(measured, dtype=torch.float64)
    a = torch.cat([torch.ones_like(y).unsqueeze(1), x[:, used]], dim=1) / y.unsqueeze(1)
    sol = torch.linalg.lstsq(a, torch.ones_like(y).unsqueeze(1)).solution.squeeze(1)
    scales = [1.0] * x.shape[1]
    for k, v in zip(used.tolist(), sol[1:].tolist()):
        scales[k] = v
    return float(sol[0]), scales


def cross_validated(raw: Sequence[float], measured: Sequence[float]) -> list[float]:
    """Each sample predicted by the affine map fitted on the other half (even/odd indices)."""
    out = [0.0] * len(raw)
    for fold in (0, 1):
        train = [i for i in range(len(raw)) if i % 2 != fold]
        a, b = fit_affine([raw[i] for i in train], [measured[i] for i in train])
        for i in range(fold, len(raw), 2):
            out[i] = a + b * raw[i]
    return out


def cross_validated_per_op(by_op: Sequence[Sequence[float]], measured: Sequence[float]) -> list[float]:
    """As ``cross_validated``, for the per-op-type model."""
    out = [0.0] * len(by_op)
    for fold in (0, 1):
        train = [i for i in range(len(by_op)) if i % 2 != fold]
        a, scales = fit_per_op([by_op[i] for i in train], [measured[i] for i in train])
        for i in range(fold, len(by_op), 2):
            out[i] = a + sum(c * v for c, v in zip(scales, by_op[i]))
    return out


def sample_genotypes(supernet, count: int, seed: int) -> list:
    gen, out = torch.Generator().manual_seed(seed), []
    for _ in range(100 * count):  # distinct architectures, bounded
        g = supernet.sample_path(gen)
        if g not in out:
            out.append(g)
        if len(out) == count:
            break
    return out


def validate_table(table: LatencyTable, samples: int = 100, seed: int = 0, device: torch.device | str = "cpu",
                   progress: bool = True, warmup: int | None = None, repeats: int | None = None) -> dict:
    """Measure ``samples`` sampled networks end to end; score the plain sum and the calibrated predictor;
    set ``table.predictor`` to the better one (the caller saves the table)."""
    if samples < 4:
        raise ValueError("validation needs at least 4 sampled architectures (2-fold cross-validation)")
    fp, shape = table.fingerprint, table.space["image_shape"]
    table.predictor = {"kind": "sum", "why": "validating"}
    supernet = table.supernet()
    predictor = LatencyPredictor(table, supernet)
    genotypes = sample_genotypes(supernet, samples, seed)
    measured, raw, by_op = [], [], []
    for g in tqdm(genotypes, desc="validate", disable=not progress, leave=False):
        measured.append(measure_network(g, shape, device, fp["dtype"], fp["batch"],
                                        table.measure["warmup"] if warmup is None else warmup,
                                        table.measure["repeats"] if repeats is None else repeats,
                                        fp.get("channels_last", False)).median_ms)
        raw.append(predictor.raw(g))
        by_op.append(predictor.by_op(g))
    cv, cv_op = cross_validated(raw, measured), cross_validated_per_op(by_op, measured)
    metrics = {"sum": accuracy_metrics(raw, measured), "calibrated": accuracy_metrics(cv, measured),
               "per_op": accuracy_metrics(cv_op, measured)}
    intercept, scale = fit_affine(raw, measured)
    op_intercept, op_scales = fit_per_op(by_op, measured)
    fitted = {"sum": {}, "calibrated": {"intercept_ms": intercept, "scale": scale},
              "per_op": {"intercept_ms": op_intercept, "op_scales": dict(zip(predictor.ops, op_scales))}}
    best = min(metrics, key=lambda k: metrics[k]["rmspe"])
    others = ", ".join(f"{k} {metrics[k]['rmspe']:.1%}" for k in metrics if k != best)
    table.predictor = {"kind": best, **fitted[best],
                       "why": f"lowest RMSPE over {len(genotypes)} networks: {best} {metrics[best]['rmspe']:.1%} "
                              f"(fitted predictors 2-fold cross-validated; {others})"}
    sum_metrics, cv_metrics = metrics["sum"], metrics["calibrated"]
    return {"fingerprint": fp, "space": table.space, "samples": len(genotypes), "seed": seed,
            "timing": {"warmup": table.measure["warmup"] if warmup is None else warmup,
                       "repeats": table.measure["repeats"] if repeats is None else repeats},
            "table_sum": sum_metrics, "calibrated_cv": cv_metrics, "per_op_cv": metrics["per_op"],
            "fitted": fitted, "predictor": table.predictor,
            "networks": [{"genotype": g.to_dict(), "measured_ms": m, "table_sum_ms": r, "calibrated_cv_ms": c,
                          "per_op_cv_ms": o} for g, m, r, c, o in zip(genotypes, measured, raw, cv, cv_op)]}


def plot_validation(report: dict, path: str | Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nets = report["networks"]
    measured = [n["measured_ms"] for n in nets]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(measured, [n["table_sum_ms"] for n in nets], s=12, label=f"table sum "
               f"(RMSPE {report['table_sum']['rmspe']:.1%}, tau {report['table_sum']['kendall_tau']:.2f})")
    ax.scatter(measured, [n["calibrated_cv_ms"] for n in nets], s=12, marker="x", label=f"calibrated, cross-validated "
               f"(RMSPE {report['calibrated_cv']['rmspe']:.1%}, tau {report['calibrated_cv']['kendall_tau']:.2f})")
    ax.scatter(measured, [n["per_op_cv_ms"] for n in nets], s=12, marker="+", label=f"per op type, cross-validated "
               f"(RMSPE {report['per_op_cv']['rmspe']:.1%}, tau {report['per_op_cv']['kendall_tau']:.2f})")
    lo, hi = min(measured) * 0.85, max(measured) * 1.15
    xs = [lo, hi]
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, [0.9 * x for x in xs], [1.1 * x for x in xs], color="grey", alpha=0.2, label="±10%")
    fp = report["fingerprint"]
    ax.set(xlabel="measured end to end (ms)", ylabel="predicted (ms)", xlim=(lo, hi), ylim=(lo, hi),
           title=f"{report['space']['name']} on {fp['device']} ({fp['dtype']}, batch {fp['batch']}"
                 + (f", {fp['threads']} threads)" if "threads" in fp else ")"))
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
