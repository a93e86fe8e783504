"""Evolution's candidates timed before the shortlist takes them (``search.latency.confirm``).

A latency table predicts a network from its ops' isolated timings; near the bound, a few percent of error
decides, and on this CPU the batch-1 table passed two networks that measure 9% slower than Conv-4
(docs/benchmarks.md).  So each candidate the shortlist would take is timed end to end, in turns with
``search.latency.target_of``'s network, as each table was timed (its batch, dtype, threads, warmup and repeats):
a drift of the machine's speed between rounds cancels in the per-round ratio.  A bound of ``limit_ms`` on a table
that predicts the reference at ``ref_ms`` allows a measured ratio of ``limit_ms / ref_ms`` (``target_factor``
when the limit was derived from the reference).  Results go to ``latency_check.json`` as they are made, so a
resumed search does not time a network twice.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Callable

import torch

from search_spaces import genotype_from_dict, load_genotype

from ..files import write_json
from ..latency.validate import measure_like_table
from ..runs import RunDir
from .constraints import LatencyBound
from .evolution import Candidate

log = logging.getLogger(__name__)

CHECK_FILE = "latency_check.json"


def timed_ratio(bound: LatencyBound, genotype, reference, image_shape, device: torch.device, rounds: int) -> dict:
    """``genotype`` and ``reference`` timed in turns ``rounds`` times as ``bound``'s table was; the median of
    the per-round ratios against what the bound allows."""
    table = bound.predictor.table
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(measure_like_table(table, genotype, image_shape, device).median_ms)
        theirs.append(measure_like_table(table, reference, image_shape, device).median_ms)
    ratio = statistics.median(m / t for m, t in zip(mine, theirs))
    allowed = bound.limit_ms / bound.predict(reference)
    return {"table": bound.table, "batch": table.fingerprint["batch"], "ratio": ratio, "allowed": allowed,
            "passes": ratio <= allowed, "network_ms": mine, "reference_ms": theirs}


class LatencyCheck:
    """``check(genotype)``: whether the network meets every bound when timed against ``reference``; at most
    ``max_networks`` are timed (a network after that is refused without timing), each once per run."""

    def __init__(self, bounds: list[LatencyBound], reference, image_shape, device: torch.device, rounds: int,
                 max_networks: int, run: RunDir) -> None:
        self.bounds, self.reference, self.image_shape, self.device = bounds, reference, tuple(image_shape), device
        self.rounds, self.max_networks, self.run = rounds, max_networks, run
        self.path: Path = run.path / CHECK_FILE
        saved = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.results = {genotype_from_dict(r["genotype"]): r for r in saved}

    def __call__(self, genotype) -> bool:
        key = genotype
        if key not in self.results:
            if len(self.results) >= self.max_networks:
                return False
            tables = [timed_ratio(b, genotype, self.reference, self.image_shape, self.device, self.rounds)
                      for b in self.bounds]
            self.results[key] = {"genotype": genotype.to_dict(), "passes": all(t["passes"] for t in tables),
                                 "tables": tables}
            with self.run.writing():
                write_json(self.path, list(self.results.values()))
            log.info("timed against the reference: %s -> %s", ", ".join(
                f"{t['ratio']:.3f} (allowed {t['allowed']:.3f}) at batch {t['batch']}" for t in tables),
                "passes" if self.results[key]["passes"] else "too slow")
        return self.results[key]["passes"]

    def ratios(self, genotype) -> list[float] | None:
        """The measured ratio on each table, for a network that was timed."""
        r = self.results.get(genotype)
        return [t["ratio"] for t in r["tables"]] if r else None

    @property
    def passed(self) -> int:
        return sum(r["passes"] for r in self.results.values())

    def summary(self) -> dict:
        return {"rounds": self.rounds, "timed": len(self.results), "passed": self.passed,
                "file": str(self.path.resolve())}


def confirmer(cfg, setup, run: RunDir, image_shape, device: torch.device) -> LatencyCheck | None:
    """The measured check of ``search.latency.confirm`` for a search with latency bounds, else None."""
    lc = cfg.search.latency
    bounds = setup.latency_limits()
    if not lc.confirm.rounds or not bounds:
        return None
    return LatencyCheck(bounds, load_genotype(lc.target_of), image_shape, device, lc.confirm.rounds,
                        lc.confirm.max_networks, run)


def confirmed(candidates: list[Candidate], check: LatencyCheck, reference: Callable[[], Candidate]
              ) -> list[Candidate]:
    """The candidates, each timed one with its measured ratios; when the first is neither the reference nor a
    network that passed (none passed), the reference (``reference()``, scored as the candidates were) comes
    first: the search returns the network the user would have picked, not one measured slower than it."""
    for c in candidates:
        c.measured = check.ratios(c.genotype)
    first = candidates[0]
    if first.genotype == check.reference or check.results.get(first.genotype, {}).get("passes"):
        return candidates
    log.warning("no candidate passed the measured latency check (%d timed); the search returns "
                "search.latency.target_of's network", len(check.results))
    return [reference()] + [c for c in candidates if c.genotype != check.reference]
