"""The jobs behind the CLI (and, later, Ray Tune trials): build data, model and learner from a config,
check the config against the data, retrain, evaluate, and write the run folder."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from meta.data import DatasetError, FewShotDataset, load_dataset
from meta.data.cache import default_cache_dir
from meta.episodes import check_episode_fits
from meta.evaluation import evaluate
from meta.learners import LEARNERS, Learner, create_learner
from meta.parallel import Ranks
from search_spaces import FixedGenotype, Genotype, build_network, load_genotype

from .checks.distributed import check_retrain_on_workers
from .config import RunConfig
from .errors import ConfigError, UserError
from .files import atomic_write_bytes, load_torch_file
from .runs import GENOTYPE_FILE, LEARNER_FILE, MODEL_FILE, RunDir
from .search.setup import SearchSetup, build_search
from .train import episode_sampler, meta_train

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' was asked for but CUDA is not available here; use device=cpu or auto")
    return torch.device(name)


def build_dataset(cfg: RunConfig) -> FewShotDataset:
    root = cfg.data_root()
    if root is not None and not root.is_dir():
        raise ConfigError(f"data.root: {root} does not exist; set data.root (or FSNAS_DATA_ROOT) to the folder "
                          f"holding the dataset", key="data.root")
    try:
        ds = load_dataset(cfg.data.dataset, root, image_size=cfg.data.image_size, split_dir=cfg.data.split_dir,
                          download=cfg.data.download, cache_dir=default_cache_dir() if cfg.data.cache else None,
                          skip_bad_images=cfg.data.skip_bad_images, **cfg.data.options)
    except DatasetError as exc:
        raise ConfigError(f"data: {exc}", key="data") from None
    if ds.info.get("skipped_images"):  # logged on every run, the disk cache read or not
        log.warning("data.skip_bad_images: %d unreadable image files left out (first: %s)",
                    ds.info["skipped_images"], ds.info["skipped_files"][0])
    lt = cfg.data.long_tail
    if lt.imbalance is not None:
        from meta.data.long_tail import make_long_tailed
        try:
            make_long_tailed(ds, lt.split, lt.imbalance, lt.seed, lt.heldout)
        except DatasetError as exc:
            raise ConfigError(f"data.long_tail: {exc}", key="data.long_tail") from None
    return ds


def check_against_data(cfg: RunConfig, ds: FewShotDataset, train: bool = True, test: bool = True,
                       search: bool = False) -> None:
    """The checks that need the data: splits exist, episodes fit the classes and images of their split."""
    checks = [("train.episode", cfg.train.split, cfg.train.episode)] if train and cfg.train.steps else []
    if search:
        checks += [("search.episode", cfg.train.split, cfg.search.episode),
                   ("search.val_split (with search.episode)", cfg.search.val_split, cfg.search.episode)]
    if test:
        checks += [(f"eval.tasks.{i}", cfg.eval.split, t) for i, t in enumerate(cfg.eval.tasks)]
    if train and cfg.pretrain.steps:
        try:
            ds.split(cfg.pretrain.split)
        except DatasetError as exc:
            raise ConfigError(f"pretrain.split: {exc}", key="pretrain.split") from None
    if train and cfg.train.val_every:  # validation runs the first evaluation task on the val split
        checks.append(("train.val_split (with eval.tasks.0)", cfg.train.val_split, cfg.eval.tasks[0]))
    for key, split_name, ep in checks:
        try:
            split = ds.split(split_name)
            check_episode_fits(split, ep.n_way, [ep.k_shot] * ep.n_way, ep.n_query, ds.name)
        except DatasetError as exc:
            raise ConfigError(f"{key}: {exc}", key=key) from None


def model_genotype(cfg: RunConfig) -> Genotype:
    """The backbone as a genotype: the genotype file if given, else the fixed model by name."""
    if cfg.model.genotype is not None:
        return load_genotype(cfg.model.genotype)
    return FixedGenotype(cfg.model.name, cfg.model.options)


def build_model(cfg: RunConfig, ds: FewShotDataset) -> nn.Module:
    """The configured backbone, freshly initialised or (``model.weights``) loaded from a state dict."""
    model = build_network(model_genotype(cfg), in_channels=ds.image_shape[0])
    if cfg.model.weights is not None:
        fix = "Give the weights of the same architecture (a run's model.pt, an export's weights.pt)"
        try:
            state = load_torch_file(cfg.model.weights, "state dict", fix)
        except UserError as exc:
            raise ConfigError(f"model.weights: {exc}", key="model.weights") from None
        try:
            model.load_state_dict(state)
        except Exception as exc:
            raise ConfigError(f"model.weights: {cfg.model.weights} does not hold weights of this backbone "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}). {fix}",
                              key="model.weights") from None
    return model


def check_model_runs(cfg: RunConfig, model: nn.Module, image_shape: tuple[int, ...]) -> None:
    """One forward pass of two blank images: a backbone too deep for the image size (its feature map shrinks
    to nothing) is refused with the sizes, not met later as a traceback inside training."""
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *image_shape))
    except RuntimeError as exc:
        shape = "x".join(map(str, image_shape))
        raise ConfigError(f"model: the backbone cannot run on {shape} images ({str(exc).splitlines()[0][:160]}); "
                          f"give a larger data.image_size or a shallower backbone (fewer layers or stages)",
                          key="model") from None


def build_learner(cfg: RunConfig, model: nn.Module, device: torch.device,
                  in_shape: tuple[int, ...] | None = None) -> Learner:
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    available = {"n_way": cfg.train.episode.n_way, "in_shape": in_shape}  # what meta.learners.GIVEN names
    given = {k: available[k] for k in LEARNERS[cfg.train.learner].needs}
    try:
        learner = create_learner(cfg.train.learner, model.to(device), **given, **cfg.train.options).to(device)
    except ValueError as exc:
        raise ConfigError(f"train.options: {exc}", key="train.options") from None
    learner.bn_mode = cfg.eval.bn_mode
    learner.amp = cfg.train.amp  # the config check refuses it for a learner without mixed_precision
    if cfg.eval.inner_steps is not None:  # the config check allows it only for learners with test_steps
        learner.test_steps = cfg.eval.inner_steps
    return learner


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def data_facts(ds: FewShotDataset) -> dict:
    """What a run's summary records of its data: the dataset, its images, the unreadable files left out."""
    facts = {"dataset": ds.name, "images": int(ds.images.shape[0])}
    if "skipped_images" in ds.info:  # data.skip_bad_images
        facts.update({k: ds.info[k] for k in ("skipped_images", "skipped_files") if k in ds.info})
    return facts


def input_spec(ds: FewShotDataset) -> dict:
    """What a backbone trained on ``ds`` expects: [C, H, W] and the normalisation of [0, 1] pixels."""
    return {"shape": list(ds.image_shape), "mean": list(ds.mean), "std": list(ds.std), "dataset": ds.name}


STANDARD_TEST_EPISODES = 600


def evaluate_tasks(cfg: RunConfig, ds: FewShotDataset, learner: Learner, device: torch.device, run: RunDir,
                   progress: bool = True) -> list[dict]:
    """Every task of ``cfg.eval`` on the same seeded episodes; one metrics line and one result per task."""
    learner.bn_mode = cfg.eval.bn_mode
    if cfg.eval.split == "test" and cfg.eval.episodes < STANDARD_TEST_EPISODES:
        log.warning("eval.episodes=%d: the standard few-shot protocol reports at least %d test episodes; these "
                    "figures are not comparable with published ones", cfg.eval.episodes, STANDARD_TEST_EPISODES)
    results = []
    for task in cfg.eval.tasks:
        sampler = episode_sampler(ds, cfg.eval.split, task, cfg.eval.seed, device)
        t0 = time.perf_counter()
        res = evaluate(learner, sampler, cfg.eval.episodes, device, progress=progress)
        row = {"dataset": ds.name, "split": cfg.eval.split, "n_way": task.n_way, "k_shot": task.k_shot,
               "n_query": task.n_query, "accuracy": res.accuracy, "ci95": res.ci95, "std": res.std,
               "episodes": res.episodes, "bn_mode": cfg.eval.bn_mode, "eval_seed": cfg.eval.seed,
               "seconds": round(time.perf_counter() - t0, 2)}
        if task.shot_profile != "balanced":
            row.update(shot_profile=task.shot_profile, min_shot=task.min_shot)
        if learner.inner_loop:
            row["inner_steps"] = learner.test_steps
        run.log({"phase": "eval", **row})
        log.info("%s %d-way %d-shot: %s", ds.name, task.n_way, task.k_shot, res.line())
        results.append(row)
    return results


def headline(results: list[dict]) -> dict:
    """The first task's figures at the top level of summary.json; all tasks under ``results``."""
    first = results[0]
    keys = ("accuracy", "ci95", "episodes", "n_way", "k_shot", "n_query", "dataset", "split", "bn_mode")
    return {**{k: first[k] for k in keys}, "results": results}


@dataclass
class Prepared:
    """What the checks before a run folder built, handed on to the job so that nothing is built twice."""
    ds: FewShotDataset
    device: torch.device
    search: SearchSetup | None = None  # when searching: supernet, latency predictor, feasibility checked


def prepare(cfg: RunConfig, train: bool = True, test: bool = True, search: bool = False) -> Prepared:
    """Device and dataset (and the search's set-up), with every check that needs them: call before creating a
    run folder."""
    if train:  # a retrain on several workers needs steps to share
        check_retrain_on_workers(cfg)
    device = resolve_device(cfg.device)
    ds = build_dataset(cfg)
    check_against_data(cfg, ds, train=train, test=test, search=search)
    if train:  # the backbone must run on these images (and the weights fit) before any run folder is made
        check_model_runs(cfg, build_model(cfg, ds), ds.image_shape)
    # searching: the latency table must fit this device and space, evolution's constraints must be feasible
    return Prepared(ds, device, build_search(cfg, ds.image_shape, device) if search else None)


def retrain(cfg: RunConfig, run: RunDir, ds: FewShotDataset, device: torch.device, progress: bool = True,
            evaluate_after: bool = True, ranks: Ranks = Ranks()) -> dict:
    """Meta-train the configured backbone with the configured learner; optionally evaluate it; write summary.
    ``ranks``: this process's place among data-parallel workers (nas.distributed); only the first goes on
    after meta-training."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, ds)
    pretrained = {}
    if cfg.pretrain.steps:  # many-way pretraining first (MTL phase 1); the learner gets the pretrained backbone
        from .pretrain import run_pretrain
        model = model.to(device, memory_format=torch.channels_last) if cfg.channels_last else model.to(device)
        pretrained = run_pretrain(cfg, ds, model, run, device, progress=progress)
    learner = build_learner(cfg, model, device, ds.image_shape)
    learner.ranks = ranks
    result = meta_train(cfg, ds, learner, run, device, progress=progress)
    if not ranks.leader:
        return {}

    best = run.load_checkpoint("best") if cfg.train.val_every else None
    if best is not None:  # report and keep the weights that validated best
        learner.model.load_state_dict(best["model"])
        learner.load_trained_state(best.get("learner", {}))
    run.save_torch(MODEL_FILE, learner.model.state_dict())
    if learner.trained_state():
        run.save_torch(LEARNER_FILE, learner.trained_state())
    genotype = model_genotype(cfg)
    with run.writing():
        atomic_write_bytes(run.path / GENOTYPE_FILE, genotype.to_yaml().encode())
    summary = {"command": "retrain", "run": str(run.path), "model": genotype.to_dict(), "learner": cfg.train.learner,
               "parameters": sum(p.numel() for p in learner.model.parameters()),
               "train": {"steps": result.steps, "seconds": round(result.seconds, 1),
                         "episodes_per_second": round(result.episodes_per_second, 2),
                         "final_loss": result.final_loss, "final_accuracy": result.final_accuracy,
                         "best_val_accuracy": result.best_val_accuracy, "best_step": result.best_step,
                         "weights": "best validation" if best is not None else "last step"},
               "device": str(device), "environment": environment(), "seed": cfg.seed, "input": input_spec(ds),
               "data": data_facts(ds)}
    if pretrained:
        summary["pretrain"] = pretrained
    if evaluate_after:
        summary.update(headline(evaluate_tasks(cfg, ds, learner, device, run, progress)))
    run.write_summary(summary)
    return summary


def load_trained(run_dir: Path, cfg: RunConfig, ds: FewShotDataset, device: torch.device) -> Learner:
    """The learner of a finished retrain run, with its saved backbone weights."""
    weights = Path(run_dir) / MODEL_FILE
    if not weights.is_file() and RunDir(run_dir).read_summary().get("command") == "search":
        raise UserError(f"{run_dir} is a search run: it chose an architecture but trained no backbone to test. "
                        f"Retrain it (fsnas retrain CONFIG --arch {run_dir}) and evaluate that run")
    if not weights.is_file():
        raise UserError(f"{run_dir} has no {MODEL_FILE}: the run did not finish training. Resume it with "
                        f"fsnas retrain --resume {run_dir}")
    saved = Path(run_dir) / GENOTYPE_FILE  # the architecture the run trained, whatever the config now points to
    genotype = load_genotype(saved) if saved.is_file() else model_genotype(cfg)
    model = build_network(genotype, in_channels=ds.image_shape[0])
    # never torch's own hint (load with weights_only=False): that would run untrusted code
    state = load_torch_file(weights, "state dict", "Use the model.pt fsnas wrote, or retrain the run")
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise UserError(f"{weights} does not hold weights for the {genotype.kind} backbone of {saved} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    learner = build_learner(cfg, model, device, ds.image_shape)
    extra = Path(run_dir) / LEARNER_FILE
    if extra.is_file():
        learned = load_torch_file(extra, f"{cfg.train.learner} state", "Retrain the run", map_location=device)
        try:
            learner.load_trained_state(learned)
        except Exception as exc:
            raise UserError(f"{extra} does not hold the {cfg.train.learner} state of this run "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") \
                from None
    elif learner.trained_state():
        raise UserError(f"{run_dir} has no {LEARNER_FILE}, which a {cfg.train.learner} learner needs (its head); "
                        f"retrain the run")
    return learner


def evaluate_run(cfg: RunConfig, trained_dir: Path, run: RunDir, ds: FewShotDataset, device: torch.device,
                 learner: Learner, progress: bool = True) -> dict:
    """Test ``learner`` (``load_trained`` of ``trained_dir``, loaded before ``run`` was made) into ``run``."""
    summary = {"command": "evaluate", "run": str(run.path), "trained_run": str(trained_dir),
               "model": model_genotype(cfg).to_dict(), "learner": cfg.train.learner, "device": str(device),
               "environment": environment(), "data": data_facts(ds),
               **headline(evaluate_tasks(cfg, ds, learner, device, run, progress))}
    run.write_summary(summary)
    return summary
