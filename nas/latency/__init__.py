"""Latency on the target device: timing modules in a deployment mode (eager, CUDA graph, torch.compile), per-op
lookup tables with device fingerprints, the predictor built on a table (plain sum, calibrated, per op type, or
calibrated plus a cost per kernel launch), and its validation against end-to-end timing."""

from .fingerprint import device_fingerprint
from .measure import LatencyStats, measure_latency
from .table import LatencyPredictor, LatencyTable, LatencyTableError, build_table
from .validate import measure_like_table, measure_network, validate_table

__all__ = ["LatencyPredictor", "LatencyStats", "LatencyTable", "LatencyTableError", "build_table",
           "device_fingerprint", "measure_latency", "measure_like_table", "measure_network", "validate_table"]
