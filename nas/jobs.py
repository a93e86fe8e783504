"""The bodies of ``fsnas search`` and ``fsnas retrain`` / ``fsnas run`` on an opened run folder, shared by the
command line and by Ray Tune trials (``nas.tuning``), so a trial writes exactly the folder the plain command
would.  With ``distributed.workers`` above 1 the search and the retrain each run on Ray Train workers
(``nas.distributed``), worker 0 writing this folder."""

from __future__ import annotations

from .config import RunConfig
from .pipeline import Prepared, data_facts, input_spec, retrain
from .runs import GENOTYPE_FILE, RunDir
from .search.loop import run_search


def search(cfg: RunConfig, run: RunDir, job: Prepared, progress: bool = True) -> dict:
    """The search of ``job`` (in this process, or on the workers): what it found."""
    if cfg.distributed.workers > 1:
        from .distributed import search_on_workers
        return search_on_workers(cfg, run)
    return run_search(cfg, run, job.ds, job.device, job.search, progress=progress)


def search_job(cfg: RunConfig, run: RunDir, job: Prepared, progress: bool = True) -> dict:
    found = search(cfg, run, job, progress)
    summary = {"command": "search", "run": str(run.path), **found, "input": input_spec(job.ds),
               "data": data_facts(job.ds)}
    run.write_summary(summary)
    return summary


def retrain_job(cfg: RunConfig, run: RunDir, job: Prepared, command: str, evaluate_after: bool = True,
                progress: bool = True) -> dict:
    """Meta-train (after a search when ``job`` was prepared for one: ``fsnas run`` with search.enabled) and
    evaluate."""
    found = {}
    if job.search is not None:  # search, then retrain the architecture it found
        found = search(cfg, run, job, progress)
        cfg.model.genotype = str(run.path / GENOTYPE_FILE)
    if cfg.distributed.workers > 1:  # the same retrain on Ray Train workers, worker 0 writing this folder
        from .distributed import retrain_on_workers
        summary = retrain_on_workers(cfg, run, evaluate_after,
                                     str((run.path / GENOTYPE_FILE).resolve()) if found else None)
    else:
        summary = retrain(cfg, run, job.ds, job.device, progress=progress, evaluate_after=evaluate_after)
    summary["command"] = command
    if found:
        summary["search"] = found
    run.write_summary(summary)
    return summary
