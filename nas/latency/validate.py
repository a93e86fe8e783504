"""Is a latency table right?  Sample architectures of its space, time each whole network the way the table
was timed (its deployment mode included), and compare with the table's prediction: RMSPE, the share within 5%
and 10%, Kendall tau and Spearman rho.  Three fitted predictors (an affine map of the table sum; an intercept
plus a scale per op type; the affine map plus a cost per kernel launch), fitted to minimise relative error,
are scored by 2-fold cross-validation; the table keeps whichever of them and the plain sum has the lowest
RMSPE (a later, richer one only where it is lower by more than rounding)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from search_spaces import build_network

from ..search.ranking import kendall_tau, spearman_rho
from .fingerprint import DTYPES, timing_mode
from .measure import LatencyStats, cpu_threads, measure_latency
from .table import LatencyPredictor, LatencyTable


def measure_network(genotype, image_shape: Sequence[int], device: torch.device | str = "cpu", dtype: str = "float32",
                    batch: int = 1, warmup: int = 10, repeats: int = 50, channels_last: bool = False,
                    mode: str = "eager", compile_mode: str | None = None) -> LatencyStats:
    """End-to-end latency of the stand-alone network of ``genotype``, timed as table entries are."""
    net = build_network(genotype, in_channels=image_shape[0]).to(device, DTYPES[dtype])
    return measure_latency(net, (batch, *image_shape), device, warmup, repeats, DTYPES[dtype], channels_last,
                           mode, compile_mode)


def measure_like_table(table: LatencyTable, genotype, image_shape: Sequence[int],
                       device: torch.device | str) -> LatencyStats:
    """The stand-alone network of ``genotype`` timed as ``table``'s entries were: its dtype, batch, memory
    format, deployment mode, warmup, repeats and (on CPU) threads."""
    fp, device = table.fingerprint, torch.device(device)
    with cpu_threads(fp.get("threads") if device.type == "cpu" else None):
        return measure_network(genotype, image_shape, device, fp["dtype"], fp["batch"], table.measure["warmup"],
                               table.measure["repeats"], fp.get("channels_last", False), *timing_mode(fp))


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


def fit_launch(raw: Sequence[float], launches: Sequence[float],
               measured: Sequence[float]) -> tuple[float, float, float]:
    """(intercept, scale, launch_ms) minimising the squared relative error of intercept + scale * raw +
    launch_ms * launches.  Where the launches do not vary apart from the sum (or at all), the least-norm
    solution: its predictions are those of the affine map."""
    y = torch.tensor(measured, dtype=torch.float64)
    a = torch.stack([torch.ones_like(y), torch.tensor(raw, dtype=torch.float64),
                     torch.tensor(launches, dtype=torch.float64)], dim=1) / y.unsqueeze(1)
    sol = torch.linalg.lstsq(a, torch.ones_like(y).unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return float(sol[0]), float(sol[1]), float(sol[2])


def _two_fold(n: int, fit_predict) -> list[float]:
    """Each of ``n`` samples predicted by ``fit_predict(train indices)`` fitted on the other half (even/odd)."""
    out = [0.0] * n
    for fold in (0, 1):
        predict = fit_predict([i for i in range(n) if i % 2 != fold])
        for i in range(fold, n, 2):
            out[i] = predict(i)
    return out


def cross_validated(raw: Sequence[float], measured: Sequence[float]) -> list[float]:
    """Each sample predicted by the affine map fitted on the other half (even/odd indices)."""
    def fit(train):
        a, b = fit_affine([raw[i] for i in train], [measured[i] for i in train])
        return lambda i: a + b * raw[i]
    return _two_fold(len(raw), fit)


def cross_validated_per_op(by_op: Sequence[Sequence[float]], measured: Sequence[float]) -> list[float]:
    """As ``cross_validated``, for the per-op-type model."""
    def fit(train):
        a, scales = fit_per_op([by_op[i] for i in train], [measured[i] for i in train])
        return lambda i: a + sum(c * v for c, v in zip(scales, by_op[i]))
    return _two_fold(len(by_op), fit)


def cross_validated_launch(raw: Sequence[float], launches: Sequence[float], measured: Sequence[float]) -> list[float]:
    """As ``cross_validated``, for the affine map plus a cost per kernel launch."""
    def fit(train):
        a, b, c = fit_launch([raw[i] for i in train], [launches[i] for i in train], [measured[i] for i in train])
        return lambda i: a + b * raw[i] + c * launches[i]
    return _two_fold(len(raw), fit)


def lowest_rmspe(metrics: dict[str, dict], tolerance: float = 1e-9) -> str:
    """The predictor (``metrics`` in order of richness) of lowest RMSPE; a later one replaces an earlier only
    where it is lower by more than ``tolerance``: an exact fit ties, up to rounding, with every richer one."""
    best = next(iter(metrics))
    for k, m in metrics.items():
        if m["rmspe"] < metrics[best]["rmspe"] - tolerance:
            best = k
    return best


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
                   progress: bool = True, warmup: int | None = None, repeats: int | None = None,
                   mode: str | None = None, compile_mode: str | None = None) -> dict:
    """Measure ``samples`` sampled networks end to end (in deployment ``mode``; None: the table's); score the
    plain sum and the fitted predictors; set ``table.predictor`` to the best (the caller saves the table)."""
    if samples < 4:
        raise ValueError("validation needs at least 4 sampled architectures (2-fold cross-validation)")
    fp, shape = table.fingerprint, table.space["image_shape"]
    if mode is None:
        mode, compile_mode = timing_mode(fp)
    table.predictor = {"kind": "sum", "why": "validating"}
    supernet = table.supernet()
    predictor = LatencyPredictor(table, supernet)
    genotypes = sample_genotypes(supernet, samples, seed)
    measured, raw, by_op, launches = [], [], [], []
    for g in tqdm(genotypes, desc="validate", disable=not progress, leave=False):
        measured.append(measure_network(g, shape, device, fp["dtype"], fp["batch"],
                                        table.measure["warmup"] if warmup is None else warmup,
                                        table.measure["repeats"] if repeats is None else repeats,
                                        fp.get("channels_last", False), mode=mode, compile_mode=compile_mode).median_ms)
        raw.append(predictor.raw(g))
        by_op.append(predictor.by_op(g))
        launches.append(predictor.launches(g))
    cv, cv_op = cross_validated(raw, measured), cross_validated_per_op(by_op, measured)
    cv_launch = cross_validated_launch(raw, launches, measured)
    metrics = {"sum": accuracy_metrics(raw, measured), "calibrated": accuracy_metrics(cv, measured),
               "per_op": accuracy_metrics(cv_op, measured), "launch": accuracy_metrics(cv_launch, measured)}
    intercept, scale = fit_affine(raw, measured)
    op_intercept, op_scales = fit_per_op(by_op, measured)
    launch_fit = dict(zip(("intercept_ms", "scale", "launch_ms"), fit_launch(raw, launches, measured)))
    fitted = {"sum": {}, "calibrated": {"intercept_ms": intercept, "scale": scale},
              "per_op": {"intercept_ms": op_intercept, "op_scales": dict(zip(predictor.ops, op_scales))},
              "launch": launch_fit}
    best = lowest_rmspe(metrics)
    others = ", ".join(f"{k} {metrics[k]['rmspe']:.1%}" for k in metrics if k != best)
    table.predictor = {"kind": best, **fitted[best],
                       "why": f"lowest RMSPE over {len(genotypes)} networks: {best} {metrics[best]['rmspe']:.1%} "
                              f"(fitted predictors 2-fold cross-validated; {others})"}
    sum_metrics, cv_metrics = metrics["sum"], metrics["calibrated"]
    return {"fingerprint": fp, "space": table.space, "samples": len(genotypes), "seed": seed,
            "timing": {"warmup": table.measure["warmup"] if warmup is None else warmup,
                       "repeats": table.measure["repeats"] if repeats is None else repeats,
                       "mode": mode, **({"compile_mode": compile_mode} if compile_mode else {})},
            "table_sum": sum_metrics, "calibrated_cv": cv_metrics, "per_op_cv": metrics["per_op"],
            "launch_cv": metrics["launch"], "fitted": fitted, "predictor": table.predictor,
            "networks": [{"genotype": g.to_dict(), "measured_ms": m, "table_sum_ms": r, "calibrated_cv_ms": c,
                          "per_op_cv_ms": o, "launch_cv_ms": lc, "launches": n}
                         for g, m, r, c, o, lc, n in zip(genotypes, measured, raw, cv, cv_op, cv_launch, launches)]}


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
    if "launch_cv" in report:
        ax.scatter(measured, [n["launch_cv_ms"] for n in nets], s=12, marker="1", label=f"per launch, cross-validated "
                   f"(RMSPE {report['launch_cv']['rmspe']:.1%}, tau {report['launch_cv']['kendall_tau']:.2f})")
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
