"""Latency in the search: the DARTS architecture loss with a differentiable expected latency, the SPOS
constraint, and the report of the final architecture's predicted and measured latency.

Both DARTS forms are written as ``A(LAT) * CE + B(LAT)``:
multiplicative ``CE * (LAT / target) ** beta`` (A = (LAT/target)^beta, B = 0) and additive
``CE + lam * (LAT - target) / target`` (A = 1, B = lam * (LAT - target) / target).  LAT is the predictor's
expected latency over the supernet's op weights, so it depends on the architecture parameters only."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..latency import LatencyPredictor, LatencyTable
from ..latency.validate import measure_like_table

FORMS = ("multiplicative", "additive")


class LatencyObjective:
    def __init__(self, predictor: LatencyPredictor, target_ms: float, form: str = "multiplicative",
                 beta: float = 0.6, lam: float = 0.1) -> None:
        if form not in FORMS:
            raise ValueError(f"latency form must be one of {FORMS}, got '{form}'")
        self.predictor, self.target, self.form, self.beta, self.lam = predictor, target_ms, form, beta, lam

    def terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, B, LAT): the architecture loss is A * CE + B."""
        lat = self.predictor.expected()
        if self.form == "multiplicative":
            return (lat / self.target) ** self.beta, torch.zeros_like(lat), lat
        return torch.ones_like(lat), self.lam * (lat - self.target) / self.target, lat

    def __call__(self, ce: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The latency-aware loss for a cross-entropy that depends on the architecture, and LAT in ms."""
        a, b, lat = self.terms()
        return a.to(ce.dtype) * ce + b.to(ce.dtype), lat.item()

    def add_to_grads(self, alphas: list[nn.Parameter], ce_value: float) -> float:
        """For gradients of CE already in ``alpha.grad`` (DARTS second order): make them the gradient of
        A * CE + B, i.e. A * grad CE + CE * grad A + grad B.  Returns LAT in ms."""
        a, b, lat = self.terms()
        with torch.no_grad():
            for p in alphas:
                if p.grad is not None:
                    p.grad.mul_(a.detach().to(p.grad.dtype))
        extra = torch.autograd.grad(ce_value * a + b, alphas, allow_unused=True)
        for p, g in zip(alphas, extra):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return lat.item()


def load_predictor(path: str, force: bool, space: str, supernet: nn.Module, image_shape,
                   device: torch.device) -> LatencyPredictor:
    """The table file ``path``, checked against this device and the ``space`` of ``supernet``, as its predictor."""
    table = LatencyTable.load(path)
    table.check_space(space, "search.space", f"search.latency table {path}")
    # the thread count is the table's to state, not this search's: latency is timed with the table's threads
    table.check_device(device, threads=table.fingerprint.get("threads"), force=force,
                       how_to_force="set search.latency.force=true")
    return LatencyPredictor(table, supernet, tuple(image_shape))


def latency_report(table_path: str, target_ms: float | None, predictor: LatencyPredictor, genotype, image_shape,
                   device: torch.device) -> dict:
    """Predicted and (timed as the table was) measured latency of ``genotype`` against the target."""
    fp = predictor.table.fingerprint
    measured = measure_like_table(predictor.table, genotype, image_shape, device)
    report = {"table": str(Path(table_path).resolve()), "predictor": predictor.table.predictor["kind"],
              "target_ms": target_ms, "predicted_ms": predictor.predict(genotype),
              "measured_ms": measured.median_ms, "measured": measured.to_dict(),
              "device": fp["device"], "batch": fp["batch"], "dtype": fp["dtype"], "threads": fp.get("threads")}
    if target_ms is not None:
        report["meets_target"] = measured.median_ms <= target_ms
    return report
