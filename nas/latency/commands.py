"""``fsnas latency build | measure | validate``: the command-line side of latency tables.  Each action
returns its summary for the CLI to print."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import UserError
from ..files import check_new_output, make_output_dir, write_json
from .fingerprint import DTYPES, timing_mode
from .measure import COMPILE_MODES, MODES, cpu_threads


def _timing_args(p: argparse.ArgumentParser, of_table: bool = False, mode_default: str = "eager") -> None:
    """Device and timing options; for validate their defaults are the table's own."""
    default = "the table's" if of_table else None
    p.add_argument("--device", default=None if of_table else "cpu", help=f"cpu, cuda or cuda:i (default: "
                                                                         f"{default or 'cpu'})")
    threads_default = "the table's" if of_table else "torch's current"
    p.add_argument("--threads", type=int, help=f"CPU threads while timing (default: {threads_default} setting)")
    p.add_argument("--warmup", type=int, default=None if of_table else 10,
                   help=f"untimed runs first (default: {default or 10})")
    p.add_argument("--repeats", type=int, default=None if of_table else 50,
                   help=f"timed runs; the median is used (default: {default or 50})")
    p.add_argument("--mode", choices=MODES, help="how the network runs when deployed: eager (op by op), cudagraph "
                   "(a CUDA graph replayed; CUDA only) or compile (torch.compile) (default: " +
                   ("the table's" if of_table else mode_default) + ")")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, help="torch.compile's mode under --mode compile "
                   "(default: " + ("the table's, else " if of_table or mode_default != "eager" else "") + "default)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="time every candidate op of a space on this device into a table")
    b.add_argument("--space", required=True, help="a search config (its search.space and search.space_options)")
    b.add_argument("overrides", nargs="*", help="config overrides, e.g. search.space_options.channels=16")
    b.add_argument("--out", required=True, help="table file to write (JSON; must not exist)")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    b.add_argument("--image-shape", help="CxHxW (default: the config's dataset at data.image_size)")
    b.add_argument("--channels-last", action="store_true", help="time in channels_last memory format")
    _timing_args(b)
    m = sub.add_parser("measure", help="time a whole network end to end (and compare with a table's prediction)")
    m.add_argument("target", help="a genotype file, an fsnas export folder or a search run")
    m.add_argument("--table", help="a table of the genotype's space: predict too, and time as the table was timed")
    m.add_argument("--input", help="CxHxW (default: the table's, else 1x28x28)")
    m.add_argument("--batch", type=int, help="batch size (default: the table's, else 1)")
    m.add_argument("--dtype", choices=sorted(DTYPES), help="(default: the table's, else float32)")
    m.add_argument("--force", action="store_true", help="use a table measured on another setup")
    m.add_argument("--out", help="write the result as JSON to this file")
    _timing_args(m, mode_default="the table's, else eager")
    v = sub.add_parser("validate", help="sample networks of a table's space, time them, score the prediction")
    v.add_argument("table", help="a table written by fsnas latency build (its predictor is updated)")
    v.add_argument("--samples", type=int, default=100, help="architectures to time end to end (default 100)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--out", required=True, help="folder for report.json and validation.png (must not exist)")
    v.add_argument("--force", action="store_true", help="validate on a setup whose fingerprint differs")
    _timing_args(v, of_table=True)


def parse_shape(text: str, what: str) -> tuple[int, int, int]:
    """``CxHxW`` from the command line (``what`` names the option in the message)."""
    try:
        c, h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{what} {text!r}: give CxHxW, e.g. 3x84x84") from None
    if min(c, h, w) < 1:
        raise UserError(f"{what} {text!r}: every size must be positive")
    return c, h, w


def _device(name: str) -> torch.device:
    from ..pipeline import resolve_device
    return resolve_device(name)


def _mode(args: argparse.Namespace, device: torch.device, fingerprint: dict | None = None) -> tuple[str, str | None]:
    """(mode, compile mode) to time in: the options, else ``fingerprint``'s (a table's), else eager; a mode
    this device cannot run is refused with the fix."""
    table_mode, table_compile = timing_mode(fingerprint) if fingerprint else ("eager", None)
    mode = args.mode or table_mode
    if mode == "cudagraph" and device.type != "cuda":
        raise UserError(f"--mode cudagraph replays CUDA graphs and needs a CUDA device, but the device is "
                        f"{device.type}; pass --device cuda, or time on the CPU with --mode eager or --mode compile")
    if mode != "compile":
        if args.compile_mode:
            raise UserError(f"--compile-mode applies to --mode compile only (the mode is {mode}); drop it or pass "
                            f"--mode compile")
        return mode, None
    return mode, args.compile_mode or (table_compile if table_mode == "compile" else None) or "default"


def _check_timing(args: argparse.Namespace) -> None:
    if (args.warmup or 0) < 0 or (args.repeats is not None and args.repeats < 1) or \
            (args.threads is not None and args.threads < 1):
        raise UserError("--warmup must be >= 0, --repeats >= 1 and --threads >= 1")
    if getattr(args, "batch", None) is not None and args.batch < 1:
        raise UserError("--batch must be at least 1")


def _genotype(target: str):
    from search_spaces import GenotypeError, load_genotype
    path = Path(target)
    if path.is_dir():
        path = path / "genotype.yaml"
    if not path.is_file():
        raise UserError(f"{target}: not a genotype file, nor a folder holding genotype.yaml")
    try:
        return load_genotype(path)
    except GenotypeError as exc:
        raise UserError(f"{path}: {exc}") from None


def cmd_build(args: argparse.Namespace) -> str:
    from ..checks import load_config
    from .table import build_table
    _check_timing(args)
    out = check_new_output(args.out, kind="file")
    cfg = load_config(args.space, args.overrides)
    if args.image_shape:
        shape = parse_shape(args.image_shape, "--image-shape")
    else:
        from ..pipeline import build_dataset
        shape = build_dataset(cfg).image_shape
    device = _device(args.device)
    mode, compile_mode = _mode(args, device)
    table = build_table(cfg.search.space, cfg.search.space_options, shape, device, args.dtype,
                        args.batch, args.threads, args.warmup, args.repeats, args.channels_last,
                        progress=not args.quiet, mode=mode, compile_mode=compile_mode)
    table.save(out)
    fp = table.fingerprint
    how = f", {mode}" + (f" ({compile_mode})" if compile_mode else "") if mode != "eager" else ""
    return (f"{len(table.entries)} op entries and {len(table.fixed)} fixed parts timed on {fp['device']} "
            f"({fp['dtype']}, batch {fp['batch']}{how}{', %d threads' % fp['threads'] if 'threads' in fp else ''}): "
            f"{out}")


def cmd_measure(args: argparse.Namespace) -> str:
    from .table import LatencyTable
    _check_timing(args)
    out = check_new_output(args.out, kind="file") if args.out else None
    genotype = _genotype(args.target)
    table = LatencyTable.load(args.table) if args.table else None
    if table:
        table.check_space(genotype.kind, f"the space of {args.target}", args.table)
    fp = table.fingerprint if table else {}
    shape = parse_shape(args.input, "--input") if args.input else tuple(table.space["image_shape"]) if table else (1, 28, 28)
    batch, dtype = args.batch or fp.get("batch", 1), args.dtype or fp.get("dtype", "float32")
    device = _device(args.device)
    mode = _mode(args, device, fp)
    with cpu_threads(args.threads if device.type == "cpu" else None):
        return _measure(args, out, genotype, table, shape, batch, dtype, device, mode)


def _measure(args, out, genotype, table, shape, batch, dtype, device, mode) -> str:
    from .table import LatencyPredictor
    from .validate import measure_network
    fp = table.fingerprint if table else {}
    result = {"target": args.target, "input": list(shape), "batch": batch, "dtype": dtype, "device": str(device),
              "mode": mode[0], **({"compile_mode": mode[1]} if mode[1] else {})}
    if table:
        if (batch, dtype) != (fp["batch"], fp["dtype"]) and not args.force:
            raise UserError(f"the table was timed at batch {fp['batch']} in {fp['dtype']}; drop --batch/--dtype or "
                            f"pass --force")
        table.check_device(device, args.threads, args.force, mode=mode[0], compile_mode=mode[1])
        try:
            predictor = LatencyPredictor(table, table.supernet(), shape)
            result.update(predicted_ms=predictor.predict(genotype), predictor=table.predictor["kind"])
        except ValueError as exc:
            raise UserError(f"{args.target} is not an architecture of the table's space: {exc}") from None
    stats = measure_network(genotype, shape, device, dtype, batch, args.warmup, args.repeats, mode=mode[0],
                            compile_mode=mode[1])
    result.update(measured=stats.to_dict(), threads=torch.get_num_threads() if device.type == "cpu" else None)
    line = f"measured {stats.median_ms:.3f} ms (median of {stats.count})"
    if "predicted_ms" in result:
        err = (result["predicted_ms"] - stats.median_ms) / stats.median_ms
        line += f"; predicted {result['predicted_ms']:.3f} ms ({result['predictor']}, {err:+.1%})"
    if out:
        write_json(out, result)
    return line


def cmd_validate(args: argparse.Namespace) -> str:
    from .table import LatencyTable
    from .validate import plot_validation, validate_table
    _check_timing(args)
    out = check_new_output(args.out)
    table = LatencyTable.load(args.table)
    fp = table.fingerprint
    device = _device(args.device or fp["device_type"])
    threads = args.threads if args.threads is not None else fp.get("threads")
    mode, compile_mode = _mode(args, device, fp)
    table.check_device(device, threads, args.force, mode=mode, compile_mode=compile_mode)
    if args.samples < 4:
        raise UserError("--samples must be at least 4 (the calibration is cross-validated on two halves)")
    timing = {"warmup": table.measure["warmup"] if args.warmup is None else args.warmup,
              "repeats": table.measure["repeats"] if args.repeats is None else args.repeats}
    with cpu_threads(threads if device.type == "cpu" else None):
        report = validate_table(table, args.samples, args.seed, device, progress=not args.quiet, mode=mode,
                                compile_mode=compile_mode, **timing)
    make_output_dir(out)
    write_json(out / "report.json", report, indent=1)
    plot_validation(report, out / "validation.png")
    saved = LatencyTable.load(args.table)  # the file as it is now: only its predictor changes
    saved.predictor = table.predictor
    saved.save(args.table)
    lines = []
    for label, key in (("table sum", "table_sum"), ("calibrated", "calibrated_cv"), ("per op", "per_op_cv"),
                       ("per launch", "launch_cv")):
        m = report[key]
        lines.append(f"{label + ':':12s}RMSPE {m['rmspe']:.1%}, within 5% {m['within_5pct']:.0%}, within 10% "
                     f"{m['within_10pct']:.0%}, tau {m['kendall_tau']:.3f}, rho {m['spearman_rho']:.3f}"
                     + (" (2-fold cross-validated)" if key != "table_sum" else ""))
    lines.append(f"predictor: {table.predictor['kind']} ({table.predictor['why']}); report: {out}")
    return "\n".join(lines)


ACTIONS = {"build": cmd_build, "measure": cmd_measure, "validate": cmd_validate}


def run(args: argparse.Namespace) -> str:
    """The action's summary (what ``fsnas latency ACTION`` prints)."""
    return ACTIONS[args.action](args)
