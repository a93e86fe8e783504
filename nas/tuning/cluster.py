"""Will the trials run?  Checked before any trial is queued, so that a job never waits forever.

Ray Tune queues a trial whose resources no node can give and waits for one, warning every minute; ``ray.init``
retries an address that nobody answers for minutes.  Here: the address must answer within a few seconds, and
one trial's resources (``tune.resources``) must fit on one alive node.  Joining a cluster whose nodes may still
be starting, fsnas waits ``tune.wait_for_nodes_s`` for such a node, then stops with the same message."""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable

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
