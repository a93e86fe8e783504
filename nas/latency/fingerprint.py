"""What a latency figure depends on besides the network: the device, its software, the dtype, the batch, the
deployment mode (eager, a CUDA graph replay, torch.compile and its mode) and (on CPU) the thread count and the
allocator setting timings use.  A table is only valid where its fingerprint matches."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch

from .measure import MODES, check_mode, steady_cpu_allocator

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cpu_name() -> str:
    with contextlib.suppress(OSError):  # no /proc/cpuinfo (not Linux), or not readable
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_fingerprint(device: torch.device | str, dtype: str, batch: int, threads: int | None = None,
                       channels_last: bool = False, mode: str = "eager", compile_mode: str | None = None) -> dict:
    """The fields two measurements must share to be comparable.  ``mode``: how the module runs (``MODES``);
    ``compile_mode``: torch.compile's mode under ``mode="compile"`` (default: "default")."""
    device = torch.device(device)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    compile_mode = check_mode(mode, compile_mode, device)
    fp = {"device_type": device.type, "torch": torch.__version__, "dtype": dtype, "batch": int(batch),
          "channels_last": bool(channels_last), "mode": mode}
    if compile_mode is not None:
        fp["compile_mode"] = compile_mode
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        fp.update({"device": props.name, "capability": f"{props.major}.{props.minor}",
                   "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                   "driver": _cuda_driver_version()})
    else:
        fp.update({"device": cpu_name(), "machine": platform.machine(),
                   "threads": int(threads if threads is not None else torch.get_num_threads()),
                   "allocator": steady_cpu_allocator()})
    return fp


def device_summary(device: torch.device | str) -> dict:
    """The device as a model card states it: type, name, the CUDA version (GPU) or the thread count (CPU), and
    torch's version; the same fields as in ``device_fingerprint``."""
    fp = device_fingerprint(device, "float32", 1)
    extra = {"cuda": fp["cuda"]} if fp["device_type"] == "cuda" else {"threads": fp["threads"]}
    return {"type": fp["device_type"], "name": fp["device"], **extra, "torch": fp["torch"]}


def _cuda_driver_version() -> str | None:
    try:  # the driver's CUDA version as the runtime reports it; absent on some builds
        v = torch._C._cuda_getDriverVersion()
        return f"{v // 1000}.{(v % 1000) // 10}"
    except Exception:
        return None


def timing_mode(fingerprint: dict) -> tuple[str, str | None]:
    """(mode, compile mode) of a fingerprint; one written before deployment modes existed states none: eager."""
    return fingerprint.get("mode", MODES[0]), fingerprint.get("compile_mode")


def fingerprint_differences(table: dict, here: dict) -> list[str]:
    """'field: table value != here value' for every field that differs (a fingerprint without a mode: eager)."""
    table, here = ({"mode": MODES[0], **fp} for fp in (table, here))
    keys = sorted(set(table) | set(here))
    return [f"{k}: {table.get(k)!r} != {here.get(k)!r}" for k in keys if table.get(k) != here.get(k)]


def differences_here(fingerprint: dict, device: torch.device | str, threads: int | None = None,
                     mode: str | None = None, compile_mode: str | None = None) -> list[str]:
    """How this machine, timing on ``device`` with ``fingerprint``'s dtype, batch and memory format, in ``mode``
    (None: the fingerprint's own mode and compile mode), differs from the setup ``fingerprint`` records (empty:
    the same)."""
    if mode is None:
        mode, compile_mode = timing_mode(fingerprint)
    if mode == "cudagraph" and torch.device(device).type != "cuda":
        return [f"device_type: {fingerprint.get('device_type')!r} != {torch.device(device).type!r} (mode "
                f"{mode!r} times on CUDA only)"]
    here = device_fingerprint(device, fingerprint["dtype"], fingerprint["batch"], threads,
                              fingerprint.get("channels_last", False), mode, compile_mode)
    return fingerprint_differences(fingerprint, here)
