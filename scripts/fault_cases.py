"""The faults and bad inputs that scripts/fault_table.py replays: what each sets up, runs and expects.

Commands run in the case's workspace (relative paths); a set-up returns a reason to skip, or None."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml

EXPLODE = ("train.options.lr_step=4", "train.options.lr_gamma=1.0e+6", "train.steps=40", "train.checkpoint_every=4")
GENOTYPE = Path(__file__).resolve().parents[1] / "configs" / "genotypes" / "omniglot_darts_cpu_seed1.yaml"


@dataclass
class Case:
    area: str
    what: str
    args: tuple
    code: int | str
    says: str  # a regular expression the output must match
    setup: Callable | None = None
    after: Callable | None = None  # returns what is wrong after the command, or None
    teardown: Callable | None = None
    timeout: float = 180


# -- set-ups and after-checks -------------------------------------------------------------------------
def diverged_run(ws) -> None:
    ws.fsnas("retrain", "tiny.yaml", *EXPLODE, "--out", "run")


def kept_good_checkpoint(ws) -> str | None:
    run = ws.path("run")
    from nas.divergence import first_non_finite
    bad = first_non_finite(torch.load(run / "checkpoints" / "last.pt", weights_only=True))
    if bad:
        return f"last.pt holds non-finite {bad}"
    return "model.pt was written" if (run / "model.pt").exists() else None


def lowered_lr(ws) -> None:
    diverged_run(ws)
    cfg = yaml.safe_load(ws.path("run/config.yaml").read_text())
    cfg["train"]["options"]["lr_gamma"] = 1.0
    ws.path("run/config.yaml").write_text(yaml.safe_dump(cfg))


def finished_run(ws) -> None:
    ws.fsnas("retrain", "tiny.yaml", "--out", "run", check=True)


def edited_run(ws) -> None:
    ws.fsnas("retrain", "tiny.yaml", "train.steps=8", "--no-eval", "--out", "run", check=True)
    (ws.path("run") / "summary.json").unlink(missing_ok=True)
    cfg = yaml.safe_load(ws.path("run/config.yaml").read_text())
    cfg["train"]["episode"]["n_way"] = 10
    ws.path("run/config.yaml").write_text(yaml.safe_dump(cfg))


def killed_run(ws) -> None:
    p = ws.background("-m", "nas.cli", "-q", "retrain", "tiny.yaml", "train.steps=400", "train.checkpoint_every=20",
                      "--no-eval", "--out", "run")
    deadline = time.time() + 120
    while not ws.path("run/checkpoints/last.pt").exists() and time.time() < deadline:
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()


def busy_run(ws) -> None:
    ws.holder = ws.background("-m", "nas.cli", "-q", "retrain", "tiny.yaml", "train.steps=100000", "--out", "run")
    deadline = time.time() + 120
    while not ws.path("run/checkpoints").exists() and time.time() < deadline:
        time.sleep(0.1)


def stop_holder(ws) -> None:
    ws.holder.kill()
    ws.holder.wait()


def held_experiment(ws) -> None:
    exp = ws.path("exp")
    (exp / "tune").mkdir(parents=True)
    (exp / "config.yaml").write_text(ws.path("tiny.yaml").read_text())
    ws.holder = ws.background("-c", "import sys, time; from nas.folder_lock import FolderLock; "
                                    "lock = FolderLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(600)",
                              str(exp))
    ws.holder.stdout.readline()


def tune_config(ws) -> None:
    cfg = yaml.safe_load(ws.path("tiny.yaml").read_text())
    cfg["tune"] = {"job": "retrain", "space": {"seed": {"grid": [0, 1]}}, "resources": {"cpu": 1}}
    ws.path("tune.yaml").write_text(yaml.safe_dump(cfg))


def nothing_at(name: str) -> Callable:
    return lambda ws: f"{name} was left behind" if ws.path(name).exists() else None


def kept(name: str, text: str) -> Callable:
    return lambda ws: None if ws.path(name).read_text() == text else f"{name} was overwritten"


def existing_folder(ws) -> None:
    ws.path("run").mkdir()
    ws.path("run/notes.txt").write_text("mine")


def existing_file(ws) -> None:
    ws.path("run").write_text("mine")


def bad_genotype(ws) -> None:
    text = GENOTYPE.read_text().replace("[sep_conv_5x5, 0]", "[sep_conv_5x5, a]", 1)
    ws.path("bad.yaml").write_text(text)


def image_folder(ws, broken: str) -> None:
    from PIL import Image
    root = ws.path("images")
    for c in range(12):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (12, 12), (c * 30, i * 40, 0)).save(root / f"c{c}" / f"{i}.png")
    bad = root / "c3" / "2.png"
    if broken == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    else:
        bad.write_text("not an image")
    (ws.path("splits")).mkdir()
    for split, names in (("train", range(0, 5)), ("val", range(5, 7)), ("test", range(7, 12))):
        ws.path(f"splits/{split}.txt").write_text("".join(f"c{c}\n" for c in names))


def pickled_supernet(ws) -> None:
    ws.fsnas("search", "search.yaml", "--out", "search", check=True)

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))
    torch.save({"supernet": Payload()}, ws.path("search/checkpoints/search.pt"))


def pickled_model(ws) -> None:
    ws.fsnas("retrain", "tiny.yaml", "train.steps=4", "--no-eval", "--out", "run", check=True)

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))
    torch.save({"w": Payload()}, ws.path("run/model.pt"))


def search_run(ws) -> None:
    ws.fsnas("search", "search.yaml", "--out", "search", check=True)


def darts_table(ws) -> None:
    ws.fsnas("latency", "build", "--space", "search.yaml", "--out", "darts.json", "--repeats", "2", "--warmup", "1",
             check=True)
    ws.path("blocks.yaml").write_text(yaml.safe_dump({"space": "blocks", "stem_channels": 8, "stages": [
        {"channels": 8, "stride": 2, "ops": ["mbconv_k3_e3"]}]}))


def foreign_table(ws) -> None:
    import json
    ws.fsnas("latency", "build", "--space", "search.yaml", "--out", "darts.json", "--repeats", "2", "--warmup", "1",
             check=True)
    table = json.loads(ws.path("darts.json").read_text())
    table["fingerprint"]["device"] = "another CPU"
    ws.path("darts.json").write_text(json.dumps(table))


def small_disk(ws) -> str | None:
    mount = ws.path("small")
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        return "not run: mounting a small tmpfs needs root (the unit test fakes ENOSPC instead)"
    import os
    free = os.statvfs(mount)
    (mount / "filler").write_bytes(b"\0" * max(0, free.f_bavail * free.f_frsize - 60_000))  # ~60 kB left
    return None


def unmount(ws) -> None:
    subprocess.run(["umount", str(ws.path("small"))], capture_output=True)


# -- the cases -------------------------------------------------------------------------------------------
LR = "a learning rate must be a finite number above 0"
CASES = [
    Case("divergence", "loss explodes in meta-training", ("retrain", "tiny.yaml", *EXPLODE, "--out", "run"), 3,
         r"non-finite at step|the loss became", after=kept_good_checkpoint),
    Case("divergence", "resume after lowering the learning rate", ("retrain", "--resume", "run", "--no-eval"), 0,
         r"trained: run/model.pt|^$", setup=lowered_lr, after=lambda ws: None if ws.path("run/model.pt").exists() else "no model.pt"),
    Case("divergence", "SPOS search whose weights diverge",
         ("search", "search.yaml", "search.sampler_options={w_lr: 1.0e+30}", "--out", "s"), 3,
         "the loss became nan", after=nothing_at("s/genotype.yaml")),
    Case("config", "infinite learning rate", ("retrain", "tiny.yaml", "train.options.lr=.inf"), 2, LR),
    Case("config", "zero learning rate", ("retrain", "tiny.yaml", "train.options.lr=0"), 2, LR),
    Case("config", "learning rate as 1e-3 (YAML 1.1 reads a string)",
         ("retrain", "tiny.yaml", "train.options.lr=1e-3", "train.steps=1", "--no-eval", "--out", "run"), 0, r"trained: run/model.pt|^$"),
    Case("config", "unknown config key", ("retrain", "tiny.yaml", "train.stpes=3"), 2, "stpes"),
    Case("config", "wrong type", ("retrain", "tiny.yaml", "train.steps=many"), 2, "train.steps"),
    Case("config", "unknown learner", ("retrain", "tiny.yaml", "train.learner=protonett"), 2, "protonett"),
    Case("config", "missing config file", ("retrain", "nope.yaml"), 2, "nope.yaml"),
    Case("run folder", "a second process on a running run", ("retrain", "--resume", "run"), 2,
         "in use by process", setup=busy_run, teardown=stop_holder),
    Case("run folder", "--out is a non-empty folder", ("retrain", "tiny.yaml", "--out", "run"), 2,
         "not empty", setup=existing_folder, after=kept("run/notes.txt", "mine")),
    Case("run folder", "--out is a file", ("retrain", "tiny.yaml", "--out", "run"), 2, "is a file",
         setup=existing_file, after=kept("run", "mine")),
    Case("run folder", "--out where nothing can be written", ("retrain", "tiny.yaml", "--out", "/proc/fsnas-run"), 2,
         "cannot be created|cannot be written"),
    Case("run folder", "a full disk", ("retrain", "tiny.yaml", "train.steps=4", "--out", "small/run"), 2,
         "the disk is full.*kept|disk is full", setup=small_disk, teardown=unmount),
    Case("resume", "SIGKILLed retrain resumed", ("retrain", "--resume", "run", "--no-eval"), 0, r"trained: run/model.pt|^$",
         setup=killed_run, after=lambda ws: None if ws.path("run/model.pt").exists() else "no model.pt"),
    Case("resume", "config.yaml edited in n_way", ("retrain", "--resume", "run"), 2, "n_way", setup=edited_run),
    Case("resume", "a finished run", ("retrain", "--resume", "run"), 0, "finished", setup=finished_run),
    Case("cluster", "trials ask for GPUs no node has", ("tune", "tune.yaml", "tune.resources.gpu=2", "--out", "exp"),
         2, "asks for cpu 1 gpu 2", setup=tune_config, after=nothing_at("exp"), timeout=120),
    Case("cluster", "trials ask for more CPUs than a node has",
         ("tune", "tune.yaml", "tune.resources.cpu=64", "--out", "exp"), 2, "asks for cpu 64", setup=tune_config,
         timeout=120),
    Case("cluster", "an address nobody answers", ("tune", "tune.yaml", "tune.address=127.0.0.1:9", "--out", "exp"),
         2, "no Ray cluster answers", setup=tune_config, after=nothing_at("exp"), timeout=60),
    Case("cluster", "a second driver on a running experiment", ("tune", "--resume", "exp"), 2, "in use by process",
         setup=held_experiment, teardown=stop_holder),
    Case("input", "unknown op-set name", ("search", "search.yaml", "search.space_options.ops=foo"), 2, "foo"),
    Case("input", "op list with an unknown op", ("search", "search.yaml", "search.space_options.ops=[skip_connect, foo]"),
         2, "foo"),
    Case("input", "space option out of range", ("search", "search.yaml", "search.space_options.cells=0"), 2, "cells"),
    Case("input", "unknown sampler option", ("search", "search.yaml", "search.sampler_options.w_lrr=0.1"), 2, "w_lrr"),
    Case("input", "genotype edge index not an integer", ("retrain", "tiny.yaml", "model.genotype=bad.yaml"), 2,
         "bad.yaml|integer", setup=bad_genotype),
    Case("input", "block genotype timed with a DARTS table",
         ("latency", "measure", "blocks.yaml", "--table", "darts.json", "--repeats", "2"), 2, "darts.*blocks|blocks.*darts",
         setup=darts_table),
    Case("input", "a truncated image in an image_folder dataset",
         ("retrain", "tiny.yaml", "data.dataset=image_folder", "data.root=images", "data.split_dir=splits",
          "data.options={}", "data.image_size=16", "train.steps=2", "--out", "run"), 2, "2.png",
         setup=lambda ws: image_folder(ws, "truncated"), after=nothing_at("run")),
    Case("input", "a text file named .png, skipped and counted",
         ("retrain", "tiny.yaml", "data.dataset=image_folder", "data.root=images", "data.split_dir=splits",
          "data.options={}", "data.image_size=16", "data.skip_bad_images=true", "train.steps=2",
          "eval.episodes=2", "--out", "run"), 0, "1 unreadable image files? left out", setup=lambda ws: image_folder(ws, "text")),
    Case("input", "a pickled payload as search.supernet",
         ("search", "search.yaml", "search.supernet=search", "--out", "evolve"), 2, "search.pt",
         setup=pickled_supernet, after=nothing_at("evolve")),
    Case("input", "a pickled payload as model.pt", ("evaluate", "run", "--out", "eval"), 2, "model.pt",
         setup=pickled_model, after=nothing_at("eval")),
    Case("input", "evaluate a search run", ("evaluate", "search"), 2, "search run", setup=search_run),
    Case("input", "overrides after --out", ("retrain", "tiny.yaml", "--out", "run", "train.steps=1", "--no-eval"), 0,
         r"trained: run/model.pt|^$", after=lambda ws: None if "steps: 1\n" in ws.path("run/config.yaml").read_text() else "ignored"),
    Case("input", "latency table from another device", ("search", "search.yaml", "search.latency.table=darts.json",
                                                         "search.latency.target_ms=5"), 2,
         "search.latency.force", setup=foreign_table),
]
CASES.append(Case("input", "a backbone too deep for the image size", ("retrain", "tiny.yaml", "model.options.layers=6",
                                                                        "--out", "run"), 2, "cannot run on",
                  after=lambda ws: "run was left behind" if ws.path("run").exists() else None))
