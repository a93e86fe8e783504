"""Writing an export folder: genotype, plain weights, TorchScript, ONNX, a torch.export program (``.pt2``),
cell pictures and the model card, each deployable file checked against the network it came from before the
folder appears.

The folder is assembled under a temporary name beside ``out`` and renamed at the end, so a failed or
killed export leaves no half-written folder, and an existing folder is never overwritten."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from search_spaces.counting import count_module

from ..latency import measure_latency
from ..latency.fingerprint import device_summary
from ..files import atomic_torch_save, check_new_output
from ..runs import GENOTYPE_FILE
from .card import write_card
from .sources import ExportError, Exportable

FORMAT = "fsnas-export/1"
WEIGHTS_FILE, CARD_FILE = "weights.pt", "model_card.json"  # GENOTYPE_FILE: the same name as in a run folder
TORCHSCRIPT_FILE, ONNX_FILE, PT2_FILE = "backbone.torchscript.pt", "backbone.onnx", "backbone.pt2"
TOLERANCE = 1e-4  # max |difference| of features between the exported formats and the network


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export_torchscript(net: nn.Module, example: torch.Tensor, path: Path) -> torch.Tensor:
    with warnings.catch_warnings():  # torch.jit is deprecated upstream but still what many runtimes load
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, example, check_trace=False)  # checked below against the network
        torch.jit.save(traced, str(path))
        return torch.jit.load(str(path))(example)


def _export_onnx(net: nn.Module, example: torch.Tensor, path: Path) -> tuple[torch.Tensor | None, str]:
    """ONNX with a dynamic batch dimension; outputs from onnxruntime when installed (else the checker only)."""
    import onnx
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), input_names=["images"], output_names=["features"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, external_data=False,
                          dynamo=True, verbose=False)
    onnx.checker.check_model(str(path), full_check=True)
    try:
        import onnxruntime as ort
    except ImportError:
        return None, f"onnx {onnx.__version__} checker"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    return torch.from_numpy(out), f"onnxruntime {ort.__version__}"


def _export_pt2(net: nn.Module, example: torch.Tensor, path: Path) -> float:
    """A torch.export program with a dynamic batch dimension (traced at batch >= 2: torch.export specialises a
    batch of 1), saved, loaded back and run at the example's batch and at batch 1; returns the max |difference|
    against the network."""
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                  strict=False)
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()  # our own file, just written
    return max(_max_diff(loaded(x), net(x)) for x in (example, example[:1]))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def write_export(item: Exportable, out: Path, device: torch.device, latency_batch: int,
                 source_note: str = "", latency_repeats: int = 50) -> dict:
    """Write one export folder at ``out``; returns the model card (as written to model_card.json)."""
    check_new_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        card = _write(item, tmp, device, latency_batch, source_note, latency_repeats)
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
        return card
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(item: Exportable, folder: Path, device: torch.device, latency_batch: int, source_note: str,
           repeats: int) -> dict:
    net = item.network.cpu().eval()
    shape = tuple(item.input["shape"])
    (folder / GENOTYPE_FILE).write_text(item.genotype.to_yaml())
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_torch_save(state, folder / WEIGHTS_FILE)
    pictures = []
    if item.genotype.kind != "fixed":
        pictures = [str(p.relative_to(folder)) for p in item.genotype.plot(folder / "cells" / "genotype.png")]

    example = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = net(example)
        ts_out = _export_torchscript(net, example, folder / TORCHSCRIPT_FILE)
        onnx_out, onnx_checked = _export_onnx(net, example, folder / ONNX_FILE)
        pt2_diff = _export_pt2(net, example, folder / PT2_FILE)
    verification = {"example": f"seeded normal input {list(example.shape)}", "tolerance": TOLERANCE,
                    "torchscript_max_abs_diff": _max_diff(ts_out, reference), "onnx_checked_with": onnx_checked,
                    "onnx_max_abs_diff": None if onnx_out is None else _max_diff(onnx_out, reference),
                    "pt2_checked_with": f"torch {torch.__version__} torch.export.load, batches "
                                        f"{example.shape[0]} and 1", "pt2_max_abs_diff": pt2_diff}
    for fmt in ("torchscript", "onnx", "pt2"):
        diff = verification[f"{fmt}_max_abs_diff"]
        if diff is not None and diff > TOLERANCE:
            raise ExportError(f"the {fmt} export differs from the network by {diff:.2e} (> {TOLERANCE}); "
                              f"nothing was written. Please report this architecture")

    params, macs = count_module(net, shape)
    timed = net.to(device)
    latency = {"device": device_summary(device), "table": None,
               "batch_1": measure_latency(timed, (1, *shape), device, warmup=min(10, repeats),
                                          repeats=repeats).to_dict(),
               f"batch_{latency_batch}": measure_latency(timed, (latency_batch, *shape), device,
                                                         warmup=min(3, repeats),
                                                         repeats=max(1, repeats // 2)).to_dict(),
               "method": "median of repeated forward passes after warm-up (CUDA events on GPU, perf_counter on "
                         "CPU), NCHW float32, eval mode"}
    net.cpu()
    files = {"genotype": GENOTYPE_FILE, "weights": WEIGHTS_FILE, "torchscript": TORCHSCRIPT_FILE,
             "onnx": ONNX_FILE, "pt2": PT2_FILE, "cells": pictures}
    card = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "architecture": item.genotype.to_dict(),
            "space": item.genotype.kind, "parameters": params, "macs": macs,
            "input": {**item.input, "layout": "NCHW float32; pixels scaled to [0, 1], then (x - mean) / std"},
            "output": {"features": int(reference.shape[1]), "meaning": "one embedding per image (no classifier)"},
            "weights": {"origin": item.weights_origin, "sha256": sha256(folder / WEIGHTS_FILE)},
            "pt2": {"sha256": sha256(folder / PT2_FILE), "torch": torch.__version__,
                    "dynamic": "batch dimension (any batch >= 1)"},
            "rank": item.rank, "search_score": item.search_score, "accuracy": item.accuracy,
            "provenance": {**item.provenance, "export_source": source_note}, "latency": latency,
            "verification": verification, "files": files}
    write_card(card, folder)
    return card
