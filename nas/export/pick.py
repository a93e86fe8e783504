"""Which candidates of a run to export: ``best``, ``top:K`` or ``pareto:K`` (score up, parameters down)."""

from __future__ import annotations

from .sources import ExportError


def parse_pick(pick: str) -> tuple[str, int]:
    kind, _, k = pick.partition(":")
    if kind == "best" and not k:
        return "best", 1
    if kind in ("top", "pareto") and k.isdigit() and int(k) >= 1:
        return kind, int(k)
    raise ExportError(f"--pick {pick!r}: use best, top:K or pareto:K with K >= 1 (e.g. top:3)")


def pareto_front(rows: list[dict]) -> list[int]:
    """Indices of the rows no other row beats on both score (higher) and parameters (fewer), fewest first."""
    front = [i for i, r in enumerate(rows)
             if not any(o["score"] >= r["score"] and o["params"] <= r["params"]
                        and (o["score"] > r["score"] or o["params"] < r["params"]) for o in rows)]
    return sorted(front, key=lambda i: (rows[i]["params"], -rows[i]["score"]))


def spread(front: list, k: int, score) -> list:
    """At most ``k`` entries of a Pareto front (ordered along it), spread evenly with both ends included;
    k 1: the one with the best ``score``."""
    if len(front) <= k:
        return list(front)
    if k == 1:
        return [max(front, key=score)]
    return [front[round(j * (len(front) - 1) / (k - 1))] for j in range(k)]


def pick_ranks(rows: list[dict], pick: str) -> list[int]:
    """1-based ranks (positions in the candidates table, best first) to export."""
    kind, k = parse_pick(pick)
    if not rows:
        raise ExportError("the run has no candidates to pick from")
    if kind in ("best", "top"):
        return list(range(1, min(k, len(rows)) + 1))
    return [i + 1 for i in spread(pareto_front(rows), k, lambda i: rows[i]["score"])]
