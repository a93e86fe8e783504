"""Timing one forward pass on a device: warm-up, then repeated runs; CUDA events on GPU (the kernels'
own time, after a synchronize), perf_counter on CPU with the thread count stated.

A module runs as it would be deployed (``MODES``): ``eager`` (op by op, each kernel launched from Python),
``cudagraph`` (the forward captured once in a CUDA graph on a static input, ``graph.replay()`` timed; CUDA
only) or ``compile`` (``torch.compile`` with a compile mode; compiled before the warm-up)."""

from __future__ import annotations

import contextlib
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


MODES = ("eager", "cudagraph", "compile")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_WARMUP = 3  # eager runs on a side stream before capture (as the CUDA graph docs do)


def check_mode(mode: str, compile_mode: str | None, device: torch.device | str) -> str | None:
    """The compile mode ``mode`` runs with (None unless compiling; "default" if not given), or ValueError for a
    mode this device cannot time."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if mode == "cudagraph" and torch.device(device).type != "cuda":
        raise ValueError(f"mode 'cudagraph' replays CUDA graphs and needs a CUDA device, not "
                         f"{torch.device(device).type}")
    if mode != "compile":
        if compile_mode is not None:
            raise ValueError(f"a compile mode ('{compile_mode}') applies to mode 'compile' only, not '{mode}'")
        return None
    if (compile_mode or "default") not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got '{compile_mode}'")
    return compile_mode or "default"


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


def _cuda_graph(module: nn.Module, x: torch.Tensor, device: torch.device) -> Callable[[], object]:
    """``module(x)`` captured in a CUDA graph; the replay to time (the graph's output stays alive with it)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the default stream: lazy initialisation stays out of the graph
        for _ in range(CUDA_GRAPH_WARMUP):
            module(x)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = module(x)

    def replay() -> object:
        graph.replay()
        return out
    return replay


def _compiled(module: nn.Module, x: torch.Tensor, compile_mode: str) -> Callable[[], object]:
    """``torch.compile(module)``, compiled (and, in compile modes that use CUDA graphs, recorded) already.
    Compiled state is reset first: each timed module compiles afresh, never falling back to eager at
    torch's limit of recompilations of one code object (every ``nn.Sequential`` op shares one ``forward``)."""
    torch.compiler.reset()
    compiled = torch.compile(module, mode=compile_mode)
    for _ in range(CUDA_GRAPH_WARMUP):  # the first call compiles; cudagraph-backed modes record on later ones
        compiled(x)
    return lambda: compiled(x)


def _runner(module: nn.Module, x: torch.Tensor, device: torch.device, mode: str,
            compile_mode: str | None) -> Callable[[], object]:
    if mode == "cudagraph":
        return _cuda_graph(module, x, device)
    if mode == "compile":
        return _compiled(module, x, compile_mode or "default")
    return lambda: module(x)


@torch.no_grad()
def measure_latency(module: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu",
                    warmup: int = 10, repeats: int = 50, dtype: torch.dtype = torch.float32,
                    channels_last: bool = False, mode: str = "eager", compile_mode: str | None = None) -> LatencyStats:
    """Latency of ``module`` (in eval mode) on a random input of ``input_shape`` (batch included), run in
    ``mode`` (``MODES``; ``compile_mode``: torch.compile's, under ``mode="compile"``).  ``channels_last``: time
    the module and input in that memory format (fsnas trains and tests in it); the module is left in the
    default (contiguous) format afterwards.  Capture and compilation come before the ``warmup`` runs."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    device = torch.device(device)
    compile_mode = check_mode(mode, compile_mode, device)
    if device.type == "cpu":
        steady_cpu_allocator()
    was_training = module.training
    module.eval()
    x = torch.randn(input_shape, device=device, dtype=dtype)
    if channels_last:
        module, x = module.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            times = _timings_ms(_runner(module, x, device, mode, compile_mode), device, warmup, repeats)
    finally:
        module.train(was_training)
        if channels_last:
            module.to(memory_format=torch.contiguous_format)
    return LatencyStats(statistics.median(times), statistics.fmean(times),
                        statistics.pvariance(times) if len(times) > 1 else 0.0, len(times))
