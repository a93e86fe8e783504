"""Latency on the target device: timing modules (and, with the latency issue, per-op lookup tables)."""

from .measure import LatencyStats, measure_latency

__all__ = ["LatencyStats", "measure_latency"]
