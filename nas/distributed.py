"""One search or meta-training job on several workers: Ray Train's ``TorchTrainer`` (``distributed.workers``).

Every worker builds the same learner (or supernet and search strategy) from the run folder's config (the same
seed, so the same weights) and computes its share of each step's episodes; gradients and the logged figures
are averaged over the workers (``meta.parallel``), so N workers of ``train.meta_batch`` (``search.meta_batch``)
B take the steps of one process of N*B.  Worker 0 writes the ordinary run folder (metrics, checkpoints,
validation, final weights, evaluation; a search's evolution, reranking and genotype); the others only read
its checkpoints when a run resumes.  ``fsnas run`` with a search is two jobs: the search on the workers, then
the retrain of what it found on them.  The driver (the ``fsnas`` process) holds the folder's lock for the
whole job, so ``--resume`` after a kill works as for one process.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from meta.parallel import Ranks

from .config import RunConfig
from .errors import UserError
from .files import write_json
from .runs import METRICS_FILE, RunDir

log = logging.getLogger(__name__)

RAY_TRAIN_DIR = "ray_train"  # Ray Train's own state, inside the run folder
PROCESSES_FILE = "ray_processes.json"  # the local Ray processes of the latest driver
FOUND_FILE = "search_found.json"  # in RAY_TRAIN_DIR: what worker 0's search found, read by the driver


class FollowerRun(RunDir):
    """The run folder as a worker other than 0 sees it: it reads checkpoints, and writes nothing."""

    def log(self, record: dict, file: str = METRICS_FILE) -> None:
        pass

    def truncate_metrics(self, phase: str, after_step: int, file: str = METRICS_FILE) -> None:
        pass

    def save_checkpoint(self, name: str, state: dict) -> Path:
        return self.checkpoint_path(name)

    def save_torch(self, file: str, obj) -> None:
        pass

    def write_summary(self, summary: dict) -> None:
        pass


def worker_loop(spec: dict) -> None:
    """What each Ray Train worker runs on the run folder ``spec["run"]`` with its share: ``spec["job"]`` is
    'retrain' (meta-training, then worker 0 evaluates) or 'search' (supernet training, then worker 0 chooses
    and leaves what it found in ``FOUND_FILE`` for the driver)."""
    import ray.train
    import ray.train.torch

    from .checks import load_config
    from .pipeline import build_dataset, retrain

    torch.set_num_threads(spec["threads"])
    path = Path(spec["run"])
    cfg = load_config(path / "config.yaml")
    device = ray.train.torch.get_device() if cfg.distributed.use_gpu else torch.device("cpu")
    ranks = Ranks.of_process_group(device if cfg.distributed.backend == "nccl" else "cpu")
    assert ranks.world == ray.train.get_context().get_world_size()
    run = RunDir(path) if ranks.leader else FollowerRun(path)
    run.config_text = (path / "config.yaml").read_text()
    ds = build_dataset(cfg)
    if spec["job"] == "search":
        from .search.loop import run_search
        from .search.setup import build_search
        found = run_search(cfg, run, ds, device, build_search(cfg, ds.image_shape, device), progress=False,
                           ranks=ranks)
        if ranks.leader:
            with run.writing():
                write_json(path / RAY_TRAIN_DIR / FOUND_FILE, found)
        return
    if spec.get("genotype"):  # fsnas run: the architecture its search found
        cfg.model.genotype = spec["genotype"]
    retrain(cfg, run, ds, device, progress=False, evaluate_after=spec["evaluate_after"], ranks=ranks)


def retrain_on_workers(cfg: RunConfig, run: RunDir, evaluate_after: bool, genotype: str | None = None) -> dict:
    """Meta-train (and evaluate) ``run`` on ``cfg.distributed.workers`` Ray Train workers; its summary.
    ``genotype``: the architecture to train instead of the config's (the file a search of this run wrote)."""
    on_workers(cfg, run, {"job": "retrain", "evaluate_after": evaluate_after, "genotype": genotype})
    return run.read_summary()


def search_on_workers(cfg: RunConfig, run: RunDir) -> dict:
    """Search in ``run`` on ``cfg.distributed.workers`` Ray Train workers; what worker 0 found (as
    ``nas.search.loop.run_search`` returns it)."""
    found = run.path / RAY_TRAIN_DIR / FOUND_FILE
    found.unlink(missing_ok=True)  # a killed driver's
    on_workers(cfg, run, {"job": "search"})
    return json.loads(found.read_text())


def on_workers(cfg: RunConfig, run: RunDir, spec: dict) -> None:
    """``worker_loop`` with ``spec`` on the workers, through Ray Train; a worker's failure is one message."""
    from .tuning.cluster import ray_cluster, record_ray_processes

    dc = cfg.distributed
    with ray_cluster(dc.address, dc.cpus_per_worker, 1.0 if dc.use_gpu else 0.0, 0.0):
        import ray
        from ray.train import RunConfig as RayRunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        check_cluster_fits(dc.workers, dc.cpus_per_worker, 1.0 if dc.use_gpu else 0.0, ray.cluster_resources())
        spec = {**spec, "run": str(run.path.resolve()), "threads": max(1, int(dc.cpus_per_worker))}
        trainer = TorchTrainer(
            worker_loop, train_loop_config=spec, torch_config=TorchConfig(backend=dc.backend),
            scaling_config=ScalingConfig(num_workers=dc.workers, use_gpu=dc.use_gpu,
                                         resources_per_worker={"CPU": dc.cpus_per_worker}),
            run_config=RayRunConfig(storage_path=str((run.path / RAY_TRAIN_DIR).resolve()), name=spec["job"]))
        record_ray_processes(run.path / PROCESSES_FILE)  # stopped by id if this driver is killed
        log.info("%s on %d Ray Train workers (%s)", "searching" if spec["job"] == "search" else "meta-training",
                 dc.workers, dc.backend)
        try:
            trainer.fit()
        except Exception as exc:  # noqa: BLE001 (a worker's failure arrives wrapped by Ray)
            lines = [s for s in str(exc).strip().splitlines() if s.strip()]
            raise UserError(f"a Ray Train worker failed ({lines[-1][:300] if lines else type(exc).__name__}); "
                            f"continue from the last checkpoint with --resume {run.path}") from None


def check_cluster_fits(workers: int, cpu: float, gpu: float, resources: dict) -> None:
    """The cluster gives every worker its CPUs and GPU (Ray Train would otherwise wait for them forever)."""
    need = {"CPU": workers * cpu, "GPU": workers * gpu}
    short = [f"{k} {need[k]:g} (the cluster has {resources.get(k, 0):g})" for k in need
             if need[k] > resources.get(k, 0) + 1e-9]
    if short:
        raise UserError(f"distributed.workers: {workers} workers need {', '.join(short)}; use fewer workers or "
                        f"fewer distributed.cpus_per_worker, or join a larger cluster with distributed.address")

