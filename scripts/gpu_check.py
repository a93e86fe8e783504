"""GPU check (issue #23): one prepared run on a lent H100/H200 that times what fsnas does on a GPU, in <= 9 minutes.

Here, once (the GPU machine has no Omniglot PNGs; this packs the decoded dataset, ~25 MB, git-ignored):

    FSNAS_DATA_ROOT=../shared/data python scripts/gpu_check.py pack --out .gpu_pack/omniglot.pt

On the device (the run tool: carry [".gpu_pack"], timeout_s 600; the machine's python3 has torch, no Ray):

    set -o pipefail; PYTHONUNBUFFERED=1 PYTHONPATH=. python3 scripts/gpu_check.py run --pack .gpu_pack/omniglot.pt \
        --out $OUT 2>&1 | tee $OUT/gpu_check.log

It writes $OUT/gpu_check.json and $OUT/gpu_check.md after every section (a killed run keeps what it measured),
$OUT/latency_tables.json (the tables and their validation reports) and $OUT/protonet_metrics.jsonl: five files
with the log, under the tool's limit of eight.  ``--sections`` runs some sections only (e.g. a rerun of one).

Sections, each with its own time cap inside the global budget (--budget-s 540, counted from the start; what a
section leaves of its cap goes to the next; a section that would start with less than its minimum left is skipped
for budget, a part that would not fit in what is left of its section is skipped for time, an alarm stops a part
that overruns; an error is recorded and the next section runs).  Expected on an H100/H200 (estimates from kernel
counts and host overhead, not yet measured):
  env                (cap 20 s)  torch, CUDA, device, date, commit: ~2 s (CUDA start)
  latency_tables     (cap 150 s) blocks (54 modules) and elastic (1470 modules) spaces with the CPU search
                     configs' options, batch 1 and 80, eager and cudagraph: build (5 warm-up + 20 timed runs per
                     module: ~5-10 ms a module eager, ~10-20 ms with a graph capture), validate on 50 sampled
                     networks (~5-15 s a table); within 10%, Kendall tau, RMSPE, predictor: ~80-150 s
  deployed_latency   (cap 170 s) Conv-4, ResNet-12 (3x84x84), the searched DARTS cell, two elastic networks
                     (--genotype, else drawn with a fixed seed) at batch 1 and 80, eager / cudagraph / compile
                     (10 + 50 runs), ratios to Conv-4: eager and cudagraph ~10-20 s; each torch.compile ~10-40 s
                     (inductor and Triton), so some of the 10 compiles may be skipped for time (status partial)
  protonet_omniglot  (cap 150 s) configs/omniglot_protonet.yaml trained (6500 steps of 60-way episodes at
                     ~3-5 ms, launch-bound) and tested (1000 episodes, 5- and 20-way 1-shot): ~35-60 s
  step_timing        (cap 50 s)  one DARTS (GPU config, second order: ~40k kernel launches, ~0.4-1 s) supernet
                     step, one ProtoNet and one MAML (second order) Conv-4 step, float32 and bfloat16 autocast,
                     median of 8 after 2 warm-up steps, the bf16/fp32 ratio: ~15-30 s

Here, on the CPU: ``python scripts/gpu_check.py run --smoke --out DIR`` runs every section at tiny sizes
(tests/test_gpu_check.py); cudagraph parts are skipped there ("needs CUDA").
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

START = time.perf_counter()  # the budget counts from here, before torch is imported

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parent), str(HERE)):  # the repository (nas, meta, ...) and this folder (the sections)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch  # noqa: E402

import gpu_check_sections as sec  # noqa: E402
from gpu_check_report import markdown  # noqa: E402
from meta.data import FewShotDataset, load_dataset  # noqa: E402
from nas.files import atomic_torch_save, write_json  # noqa: E402

PACK_FORMAT = 1
GRACE_S = 20  # past a section's cap, an alarm stops whatever it is doing (parts check the cap before starting)


def env_section(ctx, rec: dict) -> None:
    from nas.latency.fingerprint import device_fingerprint
    fp = device_fingerprint(ctx.device, "float32", 1)
    rec.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               torch=torch.__version__, python=platform.python_version(), device=fp["device"],
               device_type=fp["device_type"], cuda=torch.version.cuda, commit=_commit(), pack=ctx.pack_info)
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        rec.update(capability=fp["capability"], cudnn=fp["cudnn"], driver=fp["driver"],
                   memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   tf32_matmul=getattr(torch.backends.cuda.matmul, "allow_tf32", None),
                   tf32_cudnn=getattr(torch.backends.cudnn, "allow_tf32", None))
    else:
        rec.update(threads=fp["threads"], machine=fp["machine"])


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# name -> (function, cap in seconds, least time left to start it).  The caps sum to 540; what a section leaves of
# its cap goes to the next (slack), so each keeps its own cap while the run stays within the budget.
SECTIONS = {"env": (env_section, 20, 0), "latency_tables": (sec.latency_tables, 150, 30),
            "deployed_latency": (sec.deployed_latency, 170, 20),
            "protonet_omniglot": (sec.protonet_omniglot, 150, 60), "step_timing": (sec.step_timing, 50, 15)}


class Context:
    """What sections share: device, sizes, output folder, the time left, the dataset, the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = torch.device(args.device)
        self.cuda, self.smoke = self.device.type == "cuda", args.smoke
        self.sizes, self.genotypes, self.pack = sec.sizes(args.smoke), args.genotype or [], args.pack
        self.out = Path(args.out)
        self.started = START
        self.deadline = self.started + args.budget_s
        self.section_deadline, self.slack = self.deadline, 0.0
        self.pack_info = None
        self._dataset: FewShotDataset | None = None
        self.report = {"script": "scripts/gpu_check.py", "smoke": args.smoke, "device": str(self.device),
                       "budget_s": args.budget_s, "sections": {}}

    def left(self) -> float:
        """Seconds left in the running section (its cap, within the global budget)."""
        return min(self.section_deadline, self.deadline) - time.perf_counter()

    def fits(self, seconds: float) -> bool:
        return seconds <= self.left()

    def log(self, msg: str) -> None:
        print(f"[gpu_check {time.perf_counter() - self.started:6.1f}s] {msg}", flush=True)

    def write(self, name: str, obj) -> None:
        write_json(self.out / name, obj, indent=1)

    def save(self) -> None:
        self.report["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        write_json(self.out / "gpu_check.json", self.report)
        (self.out / "gpu_check.md").write_text(markdown(self.report))

    def dataset(self) -> FewShotDataset:
        """The smoke test's synthetic glyphs, the --pack file, or Omniglot from FSNAS_DATA_ROOT (as the config)."""
        if self._dataset is None:
            if self.smoke:
                self._dataset = load_dataset("synthetic", image_size=16, train_classes=20, val_classes=10,
                                             test_classes=20, images_per_class=16)
            elif self.pack:
                self._dataset = load_pack(self.pack)
            else:
                from nas.checks import load_config
                from nas.pipeline import build_dataset
                self._dataset = build_dataset(load_config(sec.CONFIGS / "omniglot_protonet.yaml"))
        return self._dataset


# -- running the sections ----------------------------------------------------------------------------

def _alarm(signum, frame):
    raise sec.SectionTimeout("stopped by the section's alarm")


def run_section(ctx: Context, name: str) -> dict:
    fn, cap, least = SECTIONS[name]
    left = ctx.deadline - time.perf_counter()
    cap = min(cap + ctx.slack, left)  # with what earlier sections left of their caps, within the budget
    rec: dict = {"status": "running", "cap_s": round(cap, 1)}
    ctx.report["sections"][name] = rec
    if left < least:
        rec.update(status="skipped", reason=f"budget: {left:.0f}s left, the section needs at least {least}s")
        ctx.log(f"{name}: skipped ({rec['reason']})")
        return rec
    ctx.section_deadline = time.perf_counter() + cap
    ctx.save()
    alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
    if alarm:  # the backstop: past the cap (and at most just past the budget) whatever runs is stopped
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, max(min(ctx.left() + GRACE_S, ctx.deadline + 5 - time.perf_counter()), 1))
    t0 = time.perf_counter()
    try:
        fn(ctx, rec)
        parts = [r for r in rec.get("rows", []) if r.get("status") == "skipped" and r["reason"].startswith("time")]
        rec["status"] = "partial" if parts else "ok"
        if parts:
            rec["reason"] = f"{len(parts)} part(s) skipped for time"
    except sec.SectionTimeout as exc:
        rec.update(status="timeout", reason=f"over its {cap:.0f}s: {exc}")
    except Exception as exc:
        rec.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:500]}",
                   traceback=traceback.format_exc().splitlines()[-12:])
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
        ctx.section_deadline = ctx.deadline
    if rec["status"] in ("timeout", "error") and ctx.cuda:
        try:  # leave the device usable for the next section
            torch.cuda.synchronize(ctx.device)
            torch.compiler.reset()
        except Exception:
            pass
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    ctx.slack = max(cap - rec["seconds"], 0.0)
    ctx.log(f"{name}: {rec['status']} in {rec['seconds']:.1f}s" + (f" ({rec['reason']})" if "reason" in rec else ""))
    ctx.save()
    return rec


def run(args: argparse.Namespace) -> dict:
    names = args.sections.split(",") if args.sections else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"gpu_check: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda but CUDA is not available here; pass --device cpu")
    ctx = Context(args)
    ctx.out.mkdir(parents=True, exist_ok=True)
    if args.pack:
        path = Path(args.pack)
        if not path.is_file():
            raise SystemExit(f"gpu_check: --pack {path} does not exist; make it here with python scripts/gpu_check.py "
                             f"pack --out {path} and carry its folder")
        ctx.pack_info = {"file": str(path), "bytes": path.stat().st_size,
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}
    ctx.log(f"device {ctx.device}, budget {args.budget_s}s, sections {', '.join(names)}, out {ctx.out}")
    for name in names:
        run_section(ctx, name)
    ctx.report["elapsed_s"] = round(time.perf_counter() - ctx.started, 1)
    ctx.save()
    print(markdown(ctx.report, brief=True), flush=True)
    return ctx.report


# -- the Omniglot pack -------------------------------------------------------------------------------

def pack(args: argparse.Namespace) -> None:
    """Omniglot as configs/omniglot_protonet.yaml loads it (Vinyals split, rotations, 28 px), saved as plain
    tensors and lists (torch.load(weights_only=True) reads it back)."""
    from nas.checks import load_config
    from nas.pipeline import build_dataset
    ds = build_dataset(load_config(sec.CONFIGS / "omniglot_protonet.yaml"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(pack_blob(ds, "configs/omniglot_protonet.yaml"), out)
    back = load_pack(out)
    print(f"{out}: {back.name}, {back.images.shape[0]} images {list(back.image_shape)}, "
          f"{len(back.class_names)} classes, splits {', '.join(f'{k} {len(v)}' for k, v in back.splits.items())}, "
          f"{out.stat().st_size / 2**20:.1f} MiB")


def pack_blob(ds: FewShotDataset, source: str) -> dict:
    """The dataset's fields as plain tensors, lists and dicts (``source``: what it was loaded as)."""
    return {"format": PACK_FORMAT, "name": ds.name, "images": ds.images.contiguous(), "labels": ds.labels,
            "class_names": [str(c) for c in ds.class_names],
            "splits": {k: [int(i) for i in v] for k, v in ds.splits.items()},
            "mean": [float(v) for v in ds.mean], "std": [float(v) for v in ds.std],
            "train_rotations": int(ds.train_rotations), "info": {"source": source, "image_shape": list(ds.image_shape)}}


def load_pack(path: str | Path) -> FewShotDataset:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != PACK_FORMAT:
        raise ValueError(f"{path} is not a gpu_check pack (format {PACK_FORMAT}); make one with "
                         f"python scripts/gpu_check.py pack --out {path}")
    return FewShotDataset(name=blob["name"], images=blob["images"], labels=blob["labels"],
                          class_names=list(blob["class_names"]), splits=dict(blob["splits"]),
                          mean=tuple(blob["mean"]), std=tuple(blob["std"]), train_rotations=blob["train_rotations"],
                          info={"pack": str(path), **blob.get("info", {})})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the sections and write gpu_check.json / .md")
    r.add_argument("--smoke", action="store_true", help="tiny sizes and synthetic data (the CPU test)")
    r.add_argument("--pack", help="the Omniglot file written by the pack command (else FSNAS_DATA_ROOT)")
    r.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out", help="report folder (default: $OUT, "
                   "else ./gpu_check_out)")
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    r.add_argument("--budget-s", type=float, default=540.0, help="global time budget in seconds (default 540)")
    r.add_argument("--genotype", action="append", help="a searched network to time (twice at most; default: two "
                   "drawn from the elastic space)")
    r.add_argument("--sections", help=f"comma-separated, in order (default: all: {','.join(SECTIONS)})")
    k = sub.add_parser("pack", help="save Omniglot (FSNAS_DATA_ROOT) as plain tensors for the GPU machine")
    k.add_argument("--out", required=True, help="the file to write, e.g. .gpu_pack/omniglot.pt")
    args = p.parse_args(argv)
    if args.command == "pack":
        pack(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
