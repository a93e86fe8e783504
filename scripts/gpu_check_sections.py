"""The timed sections of scripts/gpu_check.py: latency tables, deployed latency, Conv-4 ProtoNet on Omniglot and
step timing.  Each section fills its record ``rec`` as it goes (so a section stopped for time keeps what it
measured), asks ``ctx.fits(seconds)`` before each part and marks a part that does not fit as skipped.
Nothing here imports Ray (the GPU machine has none)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from meta.precision import autocast
from nas.checks import load_config
from nas.latency import build_table, measure_network, validate_table
from nas.latency.measure import MODES
from nas.pipeline import build_learner, build_model, check_against_data, retrain
from nas.runs import RunDir
from nas.search.setup import build_search
from nas.train import episode_sampler, train_sampler
from search_spaces import create_supernet, load_genotype

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SPACE_CONFIGS = {"blocks": CONFIGS / "search" / "omniglot_spos_blocks_cpu.yaml",
                 "elastic": CONFIGS / "search" / "omniglot_elastic_cpu.yaml"}
# --smoke: spaces of a few modules, the configs' data and learners with tiny episodes and step counts
SMOKE_SPACES = {"blocks": {"stem_channels": 4, "stages": [[8, 2, 2], [16, 2, 2]],
                           "choices": ["mbconv_k3_e3", "mbconv_k5_e3", "skip_connect"]},
                "elastic": {"stages": [2], "widths": [8, 16], "depths": [1], "kernels": [3],
                            "blocks": ["plain", "residual"], "convs": [1], "downsampling": ["maxpool", "stride"],
                            "heads": ["flatten", "avgpool"]}}
SMOKE_PROTONET = ["train.steps=6", "train.episode.n_way=5", "train.options.lr_step=3", "train.log_every=2",
                  "train.val_every=3", "train.val_episodes=4", "train.checkpoint_every=3", "eval.episodes=10"]
SMOKE_MAML = ["train.meta_batch=2"]
SMOKE_DARTS = ["search.space_options.channels=4", "search.space_options.cells=3", "search.space_options.nodes=2",
               "search.episode.n_way=5", "search.episode.n_query=2"]
GENOTYPE_SEED = 23  # the two elastic networks drawn when no --genotype is given (issue #23)


class SectionTimeout(BaseException):
    """A section ran past its time (a BaseException: torch's ``except Exception`` handlers let it through)."""


def sizes(smoke: bool) -> dict:
    """What each section times: the full run's sizes (fit 540 s on an H100/H200) or the smoke test's."""
    if smoke:
        return {"table_batches": (1, 4), "table_warmup": 0, "table_repeats": 2, "samples": 6, "shape": (1, 16, 16),
                "deploy_batches": (1, 4), "deploy_warmup": 0, "deploy_repeats": 2, "resnet_shape": (3, 32, 32),
                "drawn_shape": (1, 16, 16), "step_warmup": 1, "step_repeats": 2}
    return {"table_batches": (1, 80), "table_warmup": 5, "table_repeats": 20, "samples": 50, "shape": None,
            "deploy_batches": (1, 80), "deploy_warmup": 10, "deploy_repeats": 50, "resnet_shape": (3, 84, 84),
            "drawn_shape": (1, 28, 28), "step_warmup": 2, "step_repeats": 8}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _skip(row: dict, ctx, need_s: float) -> bool:
    """Mark ``row`` skipped when ``need_s`` seconds do not fit in what is left of the section."""
    if ctx.fits(need_s):
        return False
    row.update(status="skipped", reason=f"time: needs ~{need_s:.0f}s, {max(ctx.left(), 0):.0f}s left")
    return True


# -- 2. latency tables ------------------------------------------------------------------------------

METRIC_KEYS = {"sum": "table_sum", "calibrated": "calibrated_cv", "per_op": "per_op_cv", "launch": "launch_cv"}


def latency_tables(ctx, rec: dict) -> None:
    """Per space, batch and mode: build the table, validate it on sampled networks, record the chosen predictor's
    scores (2-fold cross-validated where fitted) and the plain sum's."""
    s, rows, saved = ctx.sizes, rec.setdefault("rows", []), {}
    guess = {"eager": 0.01, "cudagraph": 0.03, "net": 0.2}  # seconds per module / network until one is timed
    seen: dict[str, float] = {}
    rec["timing"] = {k: s[k] for k in ("table_warmup", "table_repeats", "samples")}
    for space, path in SPACE_CONFIGS.items():
        cfg = load_config(path)
        options = SMOKE_SPACES[space] if ctx.smoke else dict(cfg.search.space_options)
        shape = s["shape"] or (1, cfg.data.image_size, cfg.data.image_size)  # Omniglot: one channel
        plan = create_supernet(space, shape[0], **options).latency_plan(tuple(shape))
        count = len(plan.slots()) + len(plan.fixed)
        for batch in s["table_batches"]:
            for mode in ("eager", "cudagraph"):
                row = {"space": space, "batch": batch, "mode": mode, "input": list(shape)}
                rows.append(row)
                if mode == "cudagraph" and not ctx.cuda:
                    row.update(status="skipped", reason="needs CUDA")
                    continue
                need = count * seen.get(mode, guess[mode]) + s["samples"] * seen.get("net", guess["net"])
                if _skip(row, ctx, need):
                    continue
                t0 = time.perf_counter()
                table = build_table(space, options, shape, ctx.device, "float32", batch, None, s["table_warmup"],
                                    s["table_repeats"], progress=False, mode=mode)
                t1 = time.perf_counter()
                report = validate_table(table, s["samples"], 0, ctx.device, progress=False)
                t2 = time.perf_counter()
                seen[mode] = max(seen.get(mode, 0.0), (t1 - t0) / count)
                seen["net"] = max(seen.get("net", 0.0), (t2 - t1) / s["samples"])
                best, plain = report[METRIC_KEYS[table.predictor["kind"]]], report["table_sum"]
                row.update(status="ok", entries=len(table.entries), fixed=len(table.fixed),
                           build_s=round(t1 - t0, 2), samples=report["samples"],
                           within_10pct=best["within_10pct"], kendall_tau=best["kendall_tau"], rmspe=best["rmspe"],
                           predictor=table.predictor["kind"], sum_within_10pct=plain["within_10pct"],
                           sum_kendall_tau=plain["kendall_tau"], sum_rmspe=plain["rmspe"],
                           validation_s=round(t2 - t1, 2))
                ctx.log(f"{space} b{batch} {mode}: {count} modules timed in {t1 - t0:.1f}s, {report['samples']} "
                        f"networks validated in {t2 - t1:.1f}s; {row['predictor']} within 10% "
                        f"{row['within_10pct']:.0%}, tau {row['kendall_tau']:.3f}, RMSPE {row['rmspe']:.1%}")
                saved[f"{space}-b{batch}-{mode}"] = {"table": asdict(table), "validation": report}
                ctx.write("latency_tables.json", saved)
                ctx.save()


# -- 3. deployed latency -----------------------------------------------------------------------------

def deployed_networks(ctx) -> list[tuple[str, object, tuple[int, int, int]]]:
    """(name, genotype, input shape): Conv-4, ResNet-12, the searched DARTS cell and two more searched networks
    (--genotype files, else two drawn from the elastic space with a fixed seed)."""
    s = ctx.sizes
    g = CONFIGS / "genotypes"
    nets = [("conv4", load_genotype(g / "conv4.yaml"), (1, 28, 28)),
            ("resnet12", load_genotype(g / "resnet12.yaml"), tuple(s["resnet_shape"])),
            ("darts_cpu_seed1", load_genotype(g / "omniglot_darts_cpu_seed1.yaml"), (1, 28, 28))]
    given = [(Path(p).stem, load_genotype(p), (1, 28, 28)) for p in ctx.genotypes[:2]]
    if len(given) < 2:
        cfg = load_config(SPACE_CONFIGS["elastic"])
        options = SMOKE_SPACES["elastic"] if ctx.smoke else dict(cfg.search.space_options)
        supernet, drawn = create_supernet("elastic", 1, **options), []
        gen = torch.Generator().manual_seed(GENOTYPE_SEED)
        while len(drawn) < 2 - len(given):
            path = supernet.sample_path(gen)
            if path not in drawn:
                drawn.append(path)
        given += [(f"elastic_drawn{i + 1}", d, tuple(s["drawn_shape"])) for i, d in enumerate(drawn)]
    return nets + given


def deployed_latency(ctx, rec: dict) -> None:
    """Every network at each batch in eager, cudagraph and compile mode (compile last: it takes the most time);
    each row's ratio to Conv-4 in the same mode and batch; each network's eager/cudagraph ratio."""
    s, rows = ctx.sizes, rec.setdefault("rows", [])
    nets = deployed_networks(ctx)
    rec["networks"] = [{"name": n, "input": list(shape), "params": g.params(shape), "genotype": g.to_dict()}
                       for n, g, shape in nets]
    rec["timing"] = {"warmup": s["deploy_warmup"], "repeats": s["deploy_repeats"]}
    work = [(n, g, shape, b, m) for m in MODES[:2] for n, g, shape in nets for b in s["deploy_batches"]]
    work += [(n, g, shape, b, "compile") for n, g, shape in nets for b in s["deploy_batches"]]
    # the smoke test compiles one tiny network once (inductor's C++ build takes seconds on a CPU)
    smoke_compile = (nets[-1][0], s["deploy_batches"][0])
    compile_s, compiled = (45.0 if ctx.cuda else 20.0), 0.0  # a guess until one network is compiled
    try:
        for name, genotype, shape, batch, mode in work:
            row = {"network": name, "input": list(shape), "batch": batch, "mode": mode}
            rows.append(row)
            if mode == "cudagraph" and not ctx.cuda:
                row.update(status="skipped", reason="needs CUDA")
                continue
            if mode == "compile" and ctx.smoke and (name, batch) != smoke_compile:
                row.update(status="skipped", reason="smoke: compiles one tiny network only")
                continue
            if _skip(row, ctx, compile_s if mode == "compile" else 3.0):
                continue
            t0 = time.perf_counter()
            stats = measure_network(genotype, shape, ctx.device, "float32", batch, s["deploy_warmup"],
                                    s["deploy_repeats"], mode=mode)
            took = time.perf_counter() - t0
            if mode == "compile":
                compiled = max(compiled, took)
                compile_s = 1.3 * compiled
            row.update(status="ok", median_ms=stats.median_ms, mean_ms=stats.mean_ms, seconds=round(took, 2))
            ref = next((r for r in rows if r["network"] == "conv4" and r["batch"] == batch and r["mode"] == mode
                        and r.get("status") == "ok"), None)
            if ref is not None:
                row["ratio_to_conv4"] = stats.median_ms / ref["median_ms"]
            ctx.log(f"{name} b{batch} {mode}: {stats.median_ms:.3f} ms ({took:.1f}s)")
            ctx.save()
    finally:
        torch.compiler.reset()
        ok = {(r["network"], r["batch"], r["mode"]): r["median_ms"] for r in rows if r.get("status") == "ok"}
        rec["eager_over_cudagraph"] = {f"{n} b{b}": ok[(n, b, "eager")] / ok[(n, b, "cudagraph")]
                                       for n, _, _ in nets for b in s["deploy_batches"]
                                       if (n, b, "eager") in ok and (n, b, "cudagraph") in ok}


# -- 4. Conv-4 ProtoNet on Omniglot ------------------------------------------------------------------

def protonet_omniglot(ctx, rec: dict) -> None:
    """configs/omniglot_protonet.yaml as a run trains and tests it (nas.pipeline.retrain: meta_train on
    episodes made on the device, the best validated weights, evaluate_tasks), in a temporary run folder."""
    overrides = SMOKE_PROTONET if ctx.smoke else []
    cfg = load_config(CONFIGS / "omniglot_protonet.yaml", overrides)
    ds = ctx.dataset()
    check_against_data(cfg, ds)
    rec.update(config="configs/omniglot_protonet.yaml", overrides=overrides,
               dataset={"name": ds.name, "images": int(ds.images.shape[0]), "image_shape": list(ds.image_shape),
                        "train_classes": ds.split(cfg.train.split).num_classes},
               episode=f"{cfg.train.episode.n_way}-way {cfg.train.episode.k_shot}-shot "
                       f"{cfg.train.episode.n_query}-query", steps=cfg.train.steps)
    progress = rec.setdefault("progress", {})
    started = time.perf_counter()

    def listen(record: dict) -> None:  # every log_every steps: keep the progress, stop when out of time
        if record.get("phase") == "train":
            progress.update(step=record["step"], loss=record["loss"], accuracy=record["accuracy"],
                            episodes_per_s=record["episodes_per_s"],
                            elapsed_s=round(time.perf_counter() - started, 1))
            progress["train_estimate_s"] = round(progress["elapsed_s"] * cfg.train.steps / record["step"], 1)
        elif record.get("phase") == "val":
            progress.update(val_step=record["step"], val_accuracy=record["accuracy"])
        ctx.save()
        if ctx.left() <= 0:
            raise SectionTimeout(f"stopped at step {progress.get('step')} of {cfg.train.steps}")

    folder = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    run = RunDir.create(cfg, folder / "protonet")
    run.listeners.append(listen)
    try:
        summary = retrain(cfg, run, ds, ctx.device, progress=False)
    finally:
        run.unlock()
        if (run.path / "metrics.jsonl").is_file():
            shutil.copyfile(run.path / "metrics.jsonl", ctx.out / "protonet_metrics.jsonl")
        shutil.rmtree(folder, ignore_errors=True)
    t = summary["train"]
    rec["train"] = {"steps": t["steps"], "seconds": t["seconds"], "gpu_minutes": round(t["seconds"] / 60, 2),
                    "episodes_per_second": t["episodes_per_second"], "final_loss": t["final_loss"],
                    "best_val_accuracy": t["best_val_accuracy"], "best_step": t["best_step"], "weights": t["weights"]}
    rec["results"] = [{k: r[k] for k in ("n_way", "k_shot", "n_query", "accuracy", "ci95", "episodes", "seconds")}
                      for r in summary["results"]]
    for r in rec["results"]:
        ctx.log(f"{r['n_way']}-way {r['k_shot']}-shot: {100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}%")


# -- 5. step timing -----------------------------------------------------------------------------------

def _darts_step(ctx, ds, amp: bool):
    cfg = load_config(CONFIGS / "search" / "omniglot_darts_gpu.yaml", SMOKE_DARTS if ctx.smoke else [])
    strategy = build_search(cfg, ds.image_shape, ctx.device).strategy()
    train = episode_sampler(ds, cfg.train.split, cfg.search.episode, cfg.seed, ctx.device)
    val = episode_sampler(ds, cfg.search.val_split, cfg.search.episode, cfg.seed + 1, ctx.device)

    def step(i: int) -> float:
        tr, va = train.episode(i).to(ctx.device), val.episode(i).to(ctx.device)
        _sync(ctx.device)
        t0 = time.perf_counter()
        with autocast(ctx.device, amp):  # as the search loop wraps it (search.amp)
            strategy.step(tr, va)
        _sync(ctx.device)
        return time.perf_counter() - t0
    return step, "configs/search/omniglot_darts_gpu.yaml"


def _learner_step(config: str, smoke_overrides: list[str]):
    def make(ctx, ds, amp: bool):
        cfg = load_config(CONFIGS / config, smoke_overrides if ctx.smoke else [])
        torch.manual_seed(cfg.seed)
        learner = build_learner(cfg, build_model(cfg, ds), ctx.device, ds.image_shape)
        learner.amp = amp  # train.amp
        sampler, mb = train_sampler(cfg, ds, ctx.device), cfg.train.meta_batch

        def step(i: int) -> float:
            episodes = [sampler.episode(i * mb + j).to(ctx.device) for j in range(mb)]
            _sync(ctx.device)
            t0 = time.perf_counter()
            learner.meta_train_step(episodes)
            _sync(ctx.device)
            return time.perf_counter() - t0
        return step, f"configs/{config}"
    return make


STEPS = {"darts_supernet": _darts_step,
         "protonet_conv4": _learner_step("omniglot_protonet.yaml", ["train.episode.n_way=5"]),
         "maml2_conv4": _learner_step("omniglot_maml.yaml", SMOKE_MAML)}


def step_timing(ctx, rec: dict) -> None:
    """The median time of one training step (after warm-up steps) in float32 and in bfloat16 autocast."""
    s, rows, ds = ctx.sizes, rec.setdefault("rows", []), ctx.dataset()
    ratios = rec.setdefault("bf16_over_fp32", {})
    rec["timing"] = {"warmup": s["step_warmup"], "repeats": s["step_repeats"]}
    for name, make in STEPS.items():
        est = 20.0 if name == "darts_supernet" else 5.0  # a guess until the float32 steps are timed
        for amp in (False, True):
            row = {"step": name, "precision": "bf16" if amp else "fp32"}
            rows.append(row)
            if _skip(row, ctx, est):
                continue
            t0 = time.perf_counter()
            step, config = make(ctx, ds, amp)
            times = [step(i) for i in range(s["step_warmup"] + s["step_repeats"])][s["step_warmup"]:]
            took = time.perf_counter() - t0
            est = 1.3 * took
            row.update(status="ok", config=config, median_ms=1000 * statistics.median(times),
                       min_ms=1000 * min(times), steps=len(times), seconds=round(took, 2))
            ctx.log(f"{name} {row['precision']}: {row['median_ms']:.2f} ms/step ({took:.1f}s)")
            ms = {r["precision"]: r["median_ms"] for r in rows if r["step"] == name and r.get("status") == "ok"}
            if len(ms) == 2:
                ratios[name] = ms["bf16"] / ms["fp32"]
            ctx.save()
