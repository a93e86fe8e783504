"""Will the trials run?  Checked before any trial is queued, so that a job never waits forever.

Ray Tune queues a trial whose resources no node can give and waits for one, warning every minute; ``ray.init``
retries an address that nobody answers for minutes.  Here: the address must answer within a few seconds, and
one trial's resources (``tune.resources``) must fit on one alive node.  Joining a cluster whose nodes may still
be starting, fsnas waits ``tune.wait_for_nodes_s`` for such a node, then stops with the same message."""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..errors import UserError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 5.0
POLL_S = 2.0


def check_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """``tune.address`` host:port must accept a connection (``auto``, ``local`` and ``ray://`` are Ray's to
    resolve; null starts a local Ray)."""
    if address is None or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"tune.address: '{address}' is not host:port (e.g. 10.0.0.5:6379, the head's address "
                        f"that ray start --head printed); or set tune.address: null for a local Ray")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"tune.address: no Ray cluster answers at {address} ({reason}, tried {timeout_s:g} s); "
                        f"start one with ray start --head --port {port}, fix the address, or set tune.address: "
                        f"null for a local Ray") from None


def alive_nodes() -> list[dict[str, float]]:
    """The CPU and GPU count of each alive node of the connected Ray cluster."""
    import ray
    return [{"CPU": n["Resources"].get("CPU", 0.0), "GPU": n["Resources"].get("GPU", 0.0)}
            for n in ray.nodes() if n.get("Alive")]


def fits(nodes: list[dict[str, float]], cpu: float, gpu: float) -> bool:
    """A trial runs on one node: some node must have both its CPUs and its GPUs."""
    return any(n.get("CPU", 0.0) >= cpu and n.get("GPU", 0.0) >= gpu for n in nodes)


def describe(nodes: list[dict[str, float]]) -> str:
    if not nodes:
        return "no alive node"
    each = ", ".join(f"cpu {n.get('CPU', 0.0):g} gpu {n.get('GPU', 0.0):g}" for n in nodes)
    return f"{len(nodes)} node{'s' if len(nodes) > 1 else ''} ({each})"


def wait_until_trials_fit(cpu: float, gpu: float, wait_s: float, nodes: Callable[[], list] = alive_nodes,
                          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                          ) -> None:
    """Return once some node can run one trial; UserError naming what was asked and what the cluster has
    after ``wait_s`` seconds (0: look once)."""
    deadline = clock() + wait_s
    seen = nodes()
    while not fits(seen, cpu, gpu):
        left = deadline - clock()
        if left <= 0:
            waited = f" after waiting {wait_s:g} s for nodes to join (tune.wait_for_nodes_s)" if wait_s > 0 else ""
            raise UserError(f"tune.resources: a trial asks for cpu {cpu:g} gpu {gpu:g} on one node, but the Ray "
                            f"cluster has {describe(seen)}{waited}; no trial was started. Lower tune.resources "
                            f"(e.g. tune.resources.gpu=0) or add a node that has them")
        log.info("waiting for a Ray node with cpu %g gpu %g (%.0f s left): the cluster has %s", cpu, gpu, left,
                 describe(seen))
        sleep(min(POLL_S, left))
        seen = nodes()


# Tune saves its experiment state at most this often (s): small, so a killed driver loses little
QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "TUNE_GLOBAL_CHECKPOINT_S": "1",
             "RAY_DEDUP_LOGS": "0", "RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_AIR_NEW_OUTPUT": "0",
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


@contextmanager
def ray_cluster(address: str | None, cpu: float, gpu: float, wait_s: float) -> Iterator[None]:
    """Ray started (or joined at ``address``) for this process, quiet, with fsnas and its data root on every
    worker's path, checked to have a node that gives ``cpu`` and ``gpu``; shut down after."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    check_address(address)
    import ray
    env = {k: os.environ[k] for k in ("FSNAS_DATA_ROOT", "FSNAS_CACHE_DIR", *QUIET_ENV) if k in os.environ}
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    if "FSNAS_DATA_ROOT" in env:
        env["FSNAS_DATA_ROOT"] = str(Path(env["FSNAS_DATA_ROOT"]).resolve())
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": env}, ignore_reinit_error=True)
    try:
        # a local Ray has all the nodes it will have; a cluster's may still be joining
        wait_until_trials_fit(cpu, gpu, wait_s)
        yield
    finally:
        ray.shutdown()


def record_ray_processes(path: Path) -> None:
    """The pids of the Ray processes this driver started (none when it joined a cluster), written to ``path``
    so that they can be stopped by id after the driver is killed."""
    from ..files import write_json
    try:
        import ray._private.worker as worker
        node = worker._global_node
        pids = sorted({info.process.pid for infos in node.all_processes.values() for info in infos
                       if info.process is not None})
    except Exception:  # private API: the record is a convenience, never a reason to fail
        pids = []
    write_json(path, {"driver": os.getpid(), "ray": pids}, indent=None)
