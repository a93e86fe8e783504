"""Create, run and resume a Ray Tune experiment of fsnas runs.

The experiment folder holds ``config.yaml`` (the config with its ``tune`` section; ``--resume`` reads it),
``tune/`` (Tune's experiment state and per-trial checkpoints), ``runs/<trial id>/`` (the trials' fsnas run
folders), ``ray_processes.json`` (the local Ray processes of the latest driver, so that they can be stopped
by id after a kill), the results (``nas.tuning.results``) and ``.lock``: the driver holds it, so a second
``fsnas tune --resume`` of a running experiment is refused with the first one's PID."""

from __future__ import annotations

import time
from pathlib import Path

from ..checks import load_config
from ..config import RunConfig, dump_config
from ..errors import UserError
from ..files import atomic_write_bytes, check_new_output, make_output_dir
from ..folder_lock import LOCK_FILE, FolderLock
from .cluster import ray_cluster, record_ray_processes
from .results import write_results
from .space import tune_space

CONFIG_FILE = "config.yaml"
TUNE_DIR = "tune"
PROCESSES_FILE = "ray_processes.json"
PATH_KEYS = (("data", "root"), ("data", "split_dir"), ("model", "genotype"), ("model", "weights"),
             ("search", "latency", "table"), ("search", "supernet"))


def absolute_paths(base: dict) -> dict:
    """Trials run in other processes (other nodes): file paths of the config made absolute."""
    for keys in PATH_KEYS:
        node = base
        for k in keys[:-1]:
            node = node.get(k) or {}
        if node.get(keys[-1]):
            node[keys[-1]] = str(Path(node[keys[-1]]).expanduser().resolve())
    return base


def new_experiment_path(out: str | Path) -> Path:
    """Where a new experiment goes: ``out``, which must not exist or be an empty folder (checked again when it
    is made, under its lock).  Creates nothing."""
    return check_new_output(Path(out).resolve(), ignore=frozenset({LOCK_FILE}),
                            hint=f", or continue that experiment with fsnas tune --resume {out}")


def create_experiment(cfg: RunConfig, exp: Path, lock: FolderLock) -> None:
    """Make the experiment folder ``exp`` (``new_experiment_path``) with its config, under ``lock``."""
    make_output_dir(exp)
    lock.acquire()
    new_experiment_path(exp)  # again, under the lock: another driver may have been first
    atomic_write_bytes(exp / CONFIG_FILE, dump_config(cfg).encode())


def open_experiment(exp_dir: str | Path) -> tuple[RunConfig, Path]:
    """The config and folder of an earlier experiment, to resume."""
    exp = Path(exp_dir).resolve()
    if not (exp / CONFIG_FILE).is_file() or not (exp / TUNE_DIR).is_dir():
        raise UserError(f"{exp} is not an fsnas tune experiment (no {CONFIG_FILE} and {TUNE_DIR}/ in it); give the "
                        f"--out folder of an earlier fsnas tune")
    return load_config(exp / CONFIG_FILE), exp


def run_experiment(cfg: RunConfig, exp: Path, parsed: dict, restore: bool = False) -> dict:
    """Run (``restore``: resume) the experiment in ``exp``, holding its lock; its results report
    (``nas.tuning.results``).  ``parsed``: ``check_space(cfg)``.  Before anything is written, the cluster must
    be able to run a trial (``nas.tuning.cluster``).  Trial state changes are logged by ``nas.tuning.callbacks``."""
    lock = FolderLock(exp, "tune experiment")
    try:
        if restore:
            lock.acquire()
        tc = cfg.tune
        with ray_cluster(tc.address, tc.resources.cpu, tc.resources.gpu, tc.wait_for_nodes_s if tc.address else 0.0):
            if not restore:
                create_experiment(cfg, exp, lock)
            record_ray_processes(exp / PROCESSES_FILE)
            errors, seconds = fit(cfg, exp, parsed, restore)
        if cfg.tune.retime_latency:
            from .retime import retime_trials
            retime_trials(exp)
        return write_results(exp, cfg, parsed, errors, seconds)
    finally:
        lock.release()


def fit(cfg: RunConfig, exp: Path, parsed: dict, restore: bool) -> tuple[dict[str, str], float]:
    """The trials through Ray Tune (connected by ``ray_cluster``): {trial id: last line of its error}, seconds."""
    from ray import tune

    from .callbacks import TrialLines
    from .trial import run_trial
    tc = cfg.tune
    spec = {"base": absolute_paths(cfg.to_dict()), "job": tc.job, "experiment": str(exp),
            "threads": max(1, int(tc.resources.cpu))}
    trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec),
                                    {"cpu": tc.resources.cpu, "gpu": tc.resources.gpu})
    if restore:  # Tune restores its run config (the state-change lines included) with the experiment
        tuner = tune.Tuner.restore(str(exp / TUNE_DIR), trainable, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = None
        if tc.asha.enabled:
            from ray.tune.schedulers import ASHAScheduler
            scheduler = ASHAScheduler(metric="val_accuracy", mode="max", max_t=tc.asha.max_t,
                                      grace_period=tc.asha.grace_period,
                                      reduction_factor=tc.asha.reduction_factor,
                                      stop_last_trials=False)  # a trial past the last rung runs to its end
        tuner = tune.Tuner(
            trainable, param_space={"overrides": tune_space(parsed)},
            tune_config=tune.TuneConfig(num_samples=tc.num_samples, scheduler=scheduler,
                                        max_concurrent_trials=tc.max_concurrent or None,
                                        trial_name_creator=lambda t: t.trial_id,
                                        trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(exp), verbose=0, callbacks=[TrialLines()],
                failure_config=tune.FailureConfig(max_failures=tc.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    t0 = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - t0
    errors = {Path(r.path).name: str(r.error).strip().splitlines()[-1] if str(r.error).strip() else "error"
              for r in grid if r.error is not None}
    return errors, seconds


