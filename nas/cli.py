"""The ``fsnas`` command line.

Each subcommand is one function registered in ``COMMANDS`` with its argument set-up.  This layer is what
writes for the user: a command prints its results on stdout; library modules log (``-q``: warnings only,
``-v``: debug), and the info lines of ``OUTPUT_LOGGERS`` (output as a command runs) reach stdout as plain
lines.  Bad input raises ``UserError``: its message is printed without a traceback and the exit code is 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

from .checks import load_config
from .errors import ConfigError, Diverged, RunFinished, UserError
from .files import DISK_FULL, check_new_output
from .resume import check_resume
from .runs import RunDir

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, setup: Callable[[argparse.ArgumentParser], None]):
    def add(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, setup, fn)
        return fn
    return add


def _split_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """``CONFIG key=value ...``: a first positional with '=' in it is an override, not a config file."""
    items = ([args.config] if args.config else []) + list(args.overrides)
    config = items[0] if items and "=" not in items[0] else None
    return config, items[1:] if config else items


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of any config field, e.g. train.steps=200")
    p.add_argument("--out", help="run folder to create (default: <out_dir>/<name>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")


def _prepare(cfg, source, **checks):
    """pipeline.prepare with the config file named in any error it raises."""
    from .pipeline import prepare
    try:
        return prepare(cfg, **checks)
    except ConfigError as exc:
        raise exc.in_file(str(source)) from None


def _open_job(args: argparse.Namespace, train: bool, test: bool, search: str):
    """Config (or the resumed run's config), every check, then the run folder: nothing is written for bad input.

    ``search``: 'always', 'never' or 'if_enabled' (when the config's search.enabled is true)."""
    config, overrides = _split_overrides(args)
    if args.resume:
        if config or overrides:
            raise UserError("--resume continues a run with its own config.yaml; give no config or overrides with it")
        source = RunDir.open(args.resume).config_path
    elif config is None:
        raise UserError(f"give a config file, e.g. fsnas {args.command} configs/quickstart.yaml")
    else:
        source = config
    if args.out and not args.resume:
        RunDir.check_out(args.out)  # before any work
    cfg = load_config(source, overrides if not args.resume else [])
    if args.resume:
        check_resume(RunDir.open(args.resume), cfg)
    searching = search == "always" or (search == "if_enabled" and cfg.search.enabled)
    job = _prepare(cfg, source, train=train, test=test, search=searching)
    run = RunDir.resume(args.resume) if args.resume else RunDir.create(cfg, args.out)
    return cfg, run, job


def _arch_genotype(arch: str) -> str:
    """The genotype file behind --arch: the file itself, or the genotype.yaml of an export or run folder."""
    path = Path(arch)
    if path.is_dir():
        path = path / "genotype.yaml"
        if not path.is_file():
            raise UserError(f"--arch {arch}: the folder has no genotype.yaml; give an fsnas export folder, a "
                            f"finished search run or a genotype file")
    elif not path.is_file():
        raise UserError(f"--arch {arch} does not exist; give an fsnas export folder, a search run or a genotype file")
    return str(path)


def _retrain_job(args: argparse.Namespace, evaluate_after: bool) -> dict:
    if getattr(args, "arch", None):
        if args.resume:
            raise UserError("--arch sets the architecture of a new run; give no --arch with --resume")
        args.overrides = [*args.overrides, f"model.genotype={_arch_genotype(args.arch)}"]
    cfg, run, job = _open_job(args, train=True, test=evaluate_after,
                              search="if_enabled" if args.command == "run" else "never")
    from .jobs import retrain_job
    return retrain_job(cfg, run, job, args.command, evaluate_after, progress=not args.quiet)


@command("search", "train a weight-sharing supernet on episodes and choose an architecture (genotype.yaml)",
         _config_args)
def cmd_search(args: argparse.Namespace) -> int:
    from .jobs import search_job
    from .runs import GENOTYPE_FILE
    cfg, run, job = _open_job(args, train=False, test=False, search="always")
    found = search_job(cfg, run, job, progress=not args.quiet)
    print(f"{cfg.search.sampler} search: validation accuracy {100 * found['score']:.2f}% "
          f"({found['params']:,} parameters)")
    print(f"genotype: {run.path / GENOTYPE_FILE}")
    return 0


def _print_results(summary: dict) -> None:
    for r in summary.get("results", []):
        print(f"{r['dataset']} {r['split']} {r['n_way']}-way {r['k_shot']}-shot: "
              f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}% ({r['episodes']} episodes, "
              f"BatchNorm {r['bn_mode']})")
    print(f"results: {Path(summary['run']) / 'summary.json'}")


@command("run", "the whole pipeline from one config: search (if search.enabled), meta-train, evaluate",
         _config_args)
def cmd_run(args: argparse.Namespace) -> int:
    _print_results(_retrain_job(args, evaluate_after=True))
    return 0


def _retrain_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--arch", metavar="PATH", help="the architecture to train: an fsnas export folder, a search run "
                                                  "folder or a genotype file (sets model.genotype)")
    p.add_argument("--no-eval", action="store_true", help="train only; skip the test episodes")


@command("retrain", "meta-train a backbone with a learner (ProtoNet, ...) and evaluate it", _retrain_args)
def cmd_retrain(args: argparse.Namespace) -> int:
    summary = _retrain_job(args, evaluate_after=not args.no_eval)
    if summary.get("results"):
        _print_results(summary)
    else:
        print(f"trained: {Path(summary['run']) / 'model.pt'}")
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run folder (fsnas search, retrain or run), a genotype file, or a backbone name "
                                  "(conv4, resnet12: initial weights)")
    p.add_argument("overrides", nargs="*", help="data.* overrides for reading the run's data, e.g. data.root=...")
    p.add_argument("--out", required=True, help="folder to create (must not exist or be empty)")
    p.add_argument("--pick", default="best", help="best | top:K | pareto:K (score against parameters) for runs "
                                                  "with several candidates (default: best)")
    p.add_argument("--device", default="auto", help="device to measure latency on: auto, cpu, cuda, cuda:1")
    p.add_argument("--latency-batch", type=int, default=80, help="second batch size timed (default 80: a 5-way "
                                                                 "1-shot episode with 15 queries)")
    p.add_argument("--latency-repeats", type=int, default=50, help="timed runs at batch 1 (half as many at the "
                                                                   "second batch size; default 50)")
    p.add_argument("--input", default="1x28x28", help="CxHxW for a genotype file or backbone name (default 1x28x28)")


@command("export", "the result of a run as a plain PyTorch backbone: weights, TorchScript, ONNX, model card",
         _export_args)
def cmd_export(args: argparse.Namespace) -> int:
    from .export import export
    from .pipeline import resolve_device
    bad = [o for o in args.overrides if not o.split("=", 1)[0].startswith(("data.", "device"))]
    if bad:
        raise UserError(f"export takes only data.* overrides; '{bad[0]}' would change the run it exports")
    from .latency.commands import parse_shape
    c, h, w = parse_shape(args.input, "--input")
    if h != w:
        raise UserError(f"--input {args.input!r}: give a square size CxHxH, e.g. 3x84x84")
    if args.latency_batch < 1 or args.latency_repeats < 1:
        raise UserError("--latency-batch and --latency-repeats must be at least 1")
    cards = export(args.source, args.out, args.pick, resolve_device(args.device), args.overrides,
                   args.latency_batch, in_channels=c, image_size=h, latency_repeats=args.latency_repeats)
    for card in cards:
        acc = card["accuracy"][0] if card["accuracy"] else None
        score = (f"{acc['n_way']}-way {acc['k_shot']}-shot {100 * acc['accuracy']:.2f} ± {100 * acc['ci95']:.2f}%"
                 if acc else f"search score {100 * card['search_score']:.2f}%" if card["search_score"] is not None
                 else "not evaluated")
        print(f"rank {card['rank']}: {card['parameters']:,} parameters, "
              f"{card['latency']['batch_1']['median_ms']:.2f} ms (batch 1, {card['latency']['device']['type']}), "
              f"{score}")
    print(f"exported: {args.out}")
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a folder written by fsnas retrain or fsnas run")
    p.add_argument("overrides", nargs="*", help="eval.* (or data.*) overrides, e.g. eval.episodes=1000 "
                                                "eval.tasks='[{n_way: 20, k_shot: 1, n_query: 5}]'")
    p.add_argument("--out", help="folder for this evaluation (default: RUN_DIR/eval-<time>)")


@command("evaluate", "test a trained run on seeded episodes: mean accuracy and 95% CI", _evaluate_args)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .pipeline import evaluate_run, load_trained
    trained = RunDir.open(args.run_dir)
    if args.out:
        RunDir.check_out(args.out)  # before any work
    bad = [o for o in args.overrides if not o.split("=", 1)[0].startswith(("eval.", "data.", "device"))]
    if bad:
        raise UserError(f"evaluate takes only eval.*, data.* and device overrides; '{bad[0]}' would change the "
                        f"trained model. Retrain instead")
    cfg = load_config(trained.config_path, args.overrides)
    cfg.out_dir = str(trained.path)
    cfg.name = "eval"
    job = _prepare(cfg, trained.config_path, train=False, test=True)
    learner = load_trained(trained.path, cfg, job.ds, job.device)  # refused weights leave no folder behind
    run = RunDir.create(cfg, args.out)
    summary = evaluate_run(cfg, trained.path, run, job.ds, job.device, learner, progress=not args.quiet)
    _print_results(summary)
    return 0


def _latency_args(p: argparse.ArgumentParser) -> None:
    from .latency.commands import add_arguments
    add_arguments(p)


@command("latency", "latency tables on the target device: build one for a space, measure a network, validate "
                    "a table's predictions", _latency_args)
def cmd_latency(args: argparse.Namespace) -> int:
    from .latency.commands import run
    print(run(args))
    return 0


def _tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config with a tune: section (see configs/tune/)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. tune.num_samples=4")
    p.add_argument("--out", help="experiment folder to create")
    p.add_argument("--resume", metavar="EXPERIMENT_DIR", help="continue a killed experiment: unfinished trials go on "
                                                              "from their last checkpoint")


@command("tune", "many searches or retrains of one config through Ray Tune (grid/random values, ASHA, restore), "
                 "with a results table and the Pareto front of accuracy against latency", _tune_args)
def cmd_tune(args: argparse.Namespace) -> int:
    from .tuning import driver
    from .tuning.results import TABLE_FILE
    from .tuning.space import check_space, trial_count
    config, overrides = _split_overrides(args)
    if args.resume:
        if config or overrides or args.out:
            raise UserError("--resume continues an experiment with its own config.yaml; give no config, overrides "
                            "or --out with it")
        cfg, exp = driver.open_experiment(args.resume)
        print(f"fsnas tune: resuming {exp}", flush=True)
        report = driver.run_experiment(cfg, exp, check_space(cfg), restore=True)
    else:
        if config is None or not args.out:
            raise UserError("give a config file and --out, e.g. fsnas tune configs/tune/omniglot_spos_latency_cpu.yaml "
                            "--out runs/sweep")
        check_new_output(args.out)  # before any work; the experiment is checked again when it is made
        cfg = load_config(config, overrides)
        try:
            parsed = check_space(cfg)
        except ConfigError as exc:
            raise exc.in_file(config) from None
        _prepare(cfg, config, train=cfg.tune.job != "search", test=cfg.tune.job != "search",
                 search=cfg.tune.job == "search" or (cfg.tune.job == "run" and cfg.search.enabled))
        exp = driver.new_experiment_path(args.out)
        print(f"fsnas tune: {trial_count(parsed, cfg.tune.num_samples)} trials of '{cfg.tune.job}' from {config} "
              f"-> {exp}", flush=True)
        report = driver.run_experiment(cfg, exp, parsed)
    print(report["table_md"], flush=True)
    print(f"results: {exp / TABLE_FILE}", flush=True)
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "describe"), help="list: the datasets and their options; "
                                                               "describe: classes and images per split")
    p.add_argument("target", nargs="?", help="for describe: a dataset name or a config file")
    p.add_argument("overrides", nargs="*", help="data.* overrides, e.g. data.root=../shared/data")


@command("data", "list datasets, or describe a dataset's splits", _data_args)
def cmd_data(args: argparse.Namespace) -> int:
    from meta.data import DATASETS, loader_options
    if args.action == "list":
        for name in DATASETS:
            opts = ", ".join(f"{k}={p.default!r}" for k, p in loader_options(name).items())
            print(f"{name:15s} options: {opts or '-'}")
        return 0
    from .pipeline import build_dataset
    if not args.target:
        raise UserError("fsnas data describe needs a dataset name or a config file, e.g. fsnas data describe synthetic")
    if args.target.endswith((".yaml", ".yml")):
        cfg = load_config(args.target, args.overrides)
    else:
        cfg = load_config(None, [f"data.dataset={args.target}", *args.overrides])
    print(json.dumps(build_dataset(cfg).describe(), indent=2))
    return 0


# loggers whose info lines are a command's own output as it runs (Ray Tune's trial state changes): written
# to stdout as plain lines, not as diagnostics; -q quiets them like other info
OUTPUT_LOGGERS = ("nas.tuning.callbacks",)


class _PlainStdout(logging.Handler):
    """Each record's message as one line on the stdout of the moment (which tests may have swapped)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


def _route_output_lines(level: int) -> None:
    for name in OUTPUT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        if not any(isinstance(h, _PlainStdout) for h in logger.handlers):  # main may run more than once
            logger.addHandler(_PlainStdout())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fsnas", description="Neural architecture search for few-shot backbones.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, setup, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        setup(p)
        p.set_defaults(func=fn)
        _own_usage(p)
    return parser


def _own_usage(p: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser remembers itself, so that a stray argument is refused with its usage line."""
    p.set_defaults(command_parser=p)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _own_usage(child)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Options and ``key=value`` overrides in any order: overrides after an option (``--out DIR train.steps=5``)
    join those before it, in command-line order; anything else left over is refused with the command's usage."""
    args, rest = parser.parse_known_args(argv)
    sub = getattr(args, "command_parser", parser)
    stray = [a for a in rest if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        sub.error(f"unrecognized arguments: {' '.join(stray)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    _route_output_lines(level)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"fsnas: error: {exc}", file=sys.stderr)
        return 2
    except RunFinished as exc:
        print(f"fsnas: {exc}", file=sys.stderr)
        return 0
    except Diverged as exc:
        print(f"fsnas: stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a write outside nas.files (a plot, TorchScript, ONNX) on a full disk
        if exc.errno not in DISK_FULL:
            raise
        print(f"fsnas: error: {exc.filename or 'a file'} could not be written: the disk is full ({exc.strerror}); "
              f"files written before are kept. Free some space and run again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fsnas: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
