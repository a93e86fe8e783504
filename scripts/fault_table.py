"""Replay every fault and bad input of docs/reliability.md on this machine and rewrite its table.

    python scripts/fault_table.py [--write docs/reliability.md] [--only SUBSTRING]

Each case runs ``python -m nas.cli`` in a fresh temporary workspace (one thread, the embedded synthetic
data; FSNAS_DATA_ROOT for nothing), after a set-up that makes the fault (a corrupt image, a held lock, a
diverging run ...).  A case passes when the exit code is the expected one, the message holds the expected
words, no traceback is printed and its own after-check holds (nothing overwritten, the checkpoint kept ...).
Exit status 1 when any case does not pass.  A few minutes on 2 CPU cores."""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from fault_cases import CASES, Case  # noqa: E402
from tests.nas.test_cli import TINY as TEST_TINY  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- fault-table:start -->", "<!-- fault-table:end -->"
# the tests' tiny retrain config, without validation and with one test task
TINY = {**TEST_TINY, "train": {**TEST_TINY["train"], "val_every": 0},
        "eval": {"episodes": 20, "tasks": TEST_TINY["eval"]["tasks"][:1]}}
SEARCH = {**copy.deepcopy(TINY), "name": "stiny",
          "search": {"enabled": True, "space": "darts", "space_options": {"channels": 4, "cells": 3, "nodes": 2},
                     "sampler": "spos", "steps": 8, "log_every": 4, "checkpoint_every": 4,
                     "evolution": {"population": 4, "generations": 1, "top_k": 2, "eval_episodes": 4,
                                   "bn_batches": 2}}}


class Workspace:
    """A temporary folder with tiny.yaml / search.yaml, and the fsnas command run in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
                    "FSNAS_CACHE_DIR": str(root / "cache")}
        (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
        (root / "search.yaml").write_text(yaml.safe_dump(SEARCH))

    def path(self, name: str) -> Path:
        return self.root / name

    def fsnas(self, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "nas.cli", "-q", *map(str, args)]
        done = subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"set-up {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def background(self, *args: str) -> subprocess.Popen:
        argv = [sys.executable, *map(str, args)]
        return subprocess.Popen(argv, cwd=self.root, env=self.env, stdout=subprocess.PIPE, text=True,
                                start_new_session=True)


def message_of(text: str) -> str:
    """The one line fsnas answered with (``fsnas: ...``), else the last line printed."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith("fsnas: ")]
    return (said[-1] if said else lines[-1] if lines else "").strip()


def run_case(case: Case) -> dict:
    with tempfile.TemporaryDirectory(prefix="fsnas-fault-") as tmp:
        ws = Workspace(Path(tmp))
        skip = case.setup(ws) if case.setup else None
        if skip:
            return {"case": case, "code": None, "message": skip, "ok": None, "seconds": 0.0}
        t0 = time.perf_counter()
        try:
            done = ws.fsnas(*case.args, timeout=case.timeout)
            code, text = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            code, text = "timeout", f"no answer within {case.timeout} s"
        seconds = time.perf_counter() - t0
        message = message_of(text)
        if code == 0:  # a run that went through: show the line that says what the case looks for
            message = next((ln.strip() for ln in text.splitlines() if ln.strip() and re.search(case.says, ln)),
                           message)
        problems = []
        if code != case.code:
            problems.append(f"exit {code}, expected {case.code}")
        if "Traceback" in text:
            problems.append("a traceback")
        if not re.search(case.says, text):
            problems.append(f"no /{case.says}/ in the output")
        if case.after and not problems:
            bad = case.after(ws)
            if bad:
                problems.append(bad)
        if case.teardown:
            case.teardown(ws)
        return {"case": case, "code": code, "message": message, "ok": not problems, "problems": problems,
                "seconds": seconds}


def table(results: list[dict]) -> str:
    rows = ["| area | fault or bad input | command | exit | fsnas answers | |", "|---|---|---|---|---|---|"]
    for r in results:
        c = r["case"]
        command = "fsnas " + " ".join(map(str, c.args))
        answer = r["message"].replace("|", "\\|").replace(str(tempfile.gettempdir()), "/tmp")
        answer = re.sub(r"/tmp/fsnas-fault-[^/ ]+/", "", answer)
        if len(answer) > 300:
            answer = answer[:297] + "..."
        mark = "skipped" if r["ok"] is None else "ok" if r["ok"] else "FAILS: " + "; ".join(r["problems"])
        rows.append(f"| {c.area} | {c.what} | `{command}` | {r['code'] if r['code'] is not None else '-'} | "
                    f"{answer} | {mark} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="rewrite the table between the fault-table markers of this file")
    ap.add_argument("--only", help="run the cases whose description contains this")
    args = ap.parse_args()
    if args.write and args.only:
        ap.error("--write rewrites the whole table: give it without --only")
    cases = [c for c in CASES if not args.only or args.only in c.what]
    results = []
    for case in cases:
        r = run_case(case)
        results.append(r)
        state = "skip" if r["ok"] is None else "ok" if r["ok"] else "FAIL"
        print(f"{state:4s} {r['seconds']:6.1f}s  {case.area}: {case.what}  ->  {r['message'][:150]}", flush=True)
        if r["ok"] is False:
            print(f"      {'; '.join(r['problems'])}", flush=True)
    if args.write:
        text = args.write.read_text()
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        stamp = f"\n_Replayed {time.strftime('%Y-%m-%d')} with `python scripts/fault_table.py --write {args.write}`._\n\n"
        args.write.write_text(head + START + stamp + table(results) + "\n" + END + tail)
    failed = [r for r in results if r["ok"] is False]
    print(f"{len(results) - len(failed)} of {len(results)} cases as documented"
          f"{'' if not failed else '; failing: ' + ', '.join(r['case'].what for r in failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
