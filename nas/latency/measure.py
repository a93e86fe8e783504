"""Timing one forward pass on a device: warm-up, then repeated runs; CUDA events on GPU (the kernels'
own time, after a synchronize), perf_counter on CPU with the thread count stated."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import torch
from torch import nn


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    mean_ms: float
    var_ms2: float
    count: int

    def to_dict(self) -> dict:
        return asdict(self)


# glibc's malloc serves large blocks with fresh mmaps and trims its heap by default, and adapts both thresholds to
# the process's history: a 12 MB activation then costs page faults on every forward, 2-3x the compute on this
# VM, and how many depends on what the process did before.  Timings on CPU keep large blocks in a heap that is
# never trimmed (as jemalloc/tcmalloc behave in deployed inference), so a figure depends on the network only.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc refuses more on 64-bit
TRIM_THRESHOLD = 1 << 30


@functools.cache
def steady_cpu_allocator() -> str:
    """Fix the C allocator's thresholds for CPU timing (once per process; it stays so for the process's life)
    and say which setting timings use; part of a CPU table's fingerprint."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "system default"
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "system default"
    return "glibc mmap_threshold=32MiB trim_threshold=1GiB"


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` CPU threads (None: as set), and restore the setting afterwards: timing must not
    change how the rest of the process computes."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timings_ms(run: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(1000 * (time.perf_counter() - t0))
    return times


@torch.no_grad()
def measure_latency(module: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu",
                    warmup: int = 10, repeats: int = 50, dtype: torch.dtype = torch.float32,
                    channels_last: bool = False) -> LatencyStats:
    """Latency of ``module`` (in eval mode) on a random input of ``input_shape`` (batch included).
    ``channels_last``: time the module and input in that memory format (fsnas trains and tests in it);
    the module is left in the default (contiguous) format afterwards."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    device = torch.device(device)
    if device.type == "cpu":
        steady_cpu_allocator()
    was_training = module.training
    module.eval()
    x = torch.randn(input_shape, device=device, dtype=dtype)
    if channels_last:
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    try:
        times = _timings_ms(lambda: module(x), device, warmup, repeats)
    finally:
        module.train(was_training)
        if channels_last:
            module.to(memory_format=torch.contiguous_format)
    return LatencyStats(statistics.median(times), statistics.fmean(times),
                        statistics.pvariance(times) if len(times) > 1 else 0.0, len(times))
