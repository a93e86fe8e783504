"""What fsnas writes (issue #21): a full disk is said, names the file and keeps the previous one; every JSON file
is strict JSON, a non-finite figure written as null."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
from pathlib import Path

import pytest
import torch

import nas.files
from nas import cli
from nas.errors import UserError
from nas.files import atomic_torch_save, atomic_write_bytes, to_json, write_json

from .test_cli import fsnas, tiny_config  # noqa: F401  (tiny_config is a fixture)

REPO = Path(__file__).resolve().parents[2]


def _fail_writes_of(monkeypatch, name_part: str, after: int = 0) -> dict:
    """os.fsync raises ENOSPC for temporary files whose name holds ``name_part``, after ``after`` such writes."""
    real, seen = os.fsync, {"n": 0}

    def fsync(fd):
        if name_part in os.readlink(f"/proc/self/fd/{fd}"):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(nas.files.os, "fsync", fsync)
    return seen


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(tiny_config, tmp_path, capsys, monkeypatch):  # noqa: F811
    out = tmp_path / "run"
    _fail_writes_of(monkeypatch, ".last.pt.", after=1)  # the checkpoint at step 4 is written, the one at 8 is not
    assert fsnas("retrain", tiny_config, "--out", out, "train.val_every=0") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (f"{out / 'checkpoints' / 'last.pt'} could not be written: the disk is full (No space left on device); "
            f"the previous last.pt is kept unchanged. Free some space, then continue from the last checkpoint with "
            f"--resume {out}") in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]  # no temporary file left
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    assert not (out / "model.pt").exists() and not (out / "summary.json").exists()
    monkeypatch.undo()
    assert fsnas("retrain", "--resume", out) == 0  # space freed: the run goes on from step 4
    assert json.loads((out / "summary.json").read_text())["train"]["steps"] == 12


def test_a_full_disk_keeps_the_previous_file_and_removes_the_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "model_card.json"
    path.write_text("old")
    _fail_writes_of(monkeypatch, ".model_card.json.")
    with pytest.raises(UserError, match=re.escape(f"{path} could not be written: the disk is full")):
        write_json(path, {"a": 1})
    with pytest.raises(UserError, match="the previous weights.pt is kept unchanged"):
        (tmp_path / "weights.pt").write_bytes(b"old weights")
        _fail_writes_of(monkeypatch, ".weights.pt.")
        atomic_torch_save({"w": torch.ones(2)}, tmp_path / "weights.pt")
    assert path.read_text() == "old" and (tmp_path / "weights.pt").read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_card.json", "weights.pt"]
    with pytest.raises(UserError, match="nothing was left in its place"):
        _fail_writes_of(monkeypatch, ".new.json.")
        atomic_write_bytes(tmp_path / "new.json", b"{}")
    assert not (tmp_path / "new.json").exists()


def test_a_full_disk_anywhere_else_is_one_message(monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/somewhere/cells/genotype.png")
    help_text, setup, _ = cli.COMMANDS["data"]
    monkeypatch.setitem(cli.COMMANDS, "data", (help_text, setup, full))
    assert cli.main(["data", "list"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "/somewhere/cells/genotype.png could not be written: the disk is full" in err


# -- 7. strict JSON ---------------------------------------------------------------------------------------
def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_a_nan_figure_is_written_as_null_and_said(tmp_path, caplog):
    figures = {"accuracy": float("nan"), "latency": {"ms": [1.0, float("inf")], "std": torch.tensor(float("nan"))},
               "ok": 0.5, "numpy": __import__("numpy").float32("nan"), "path": tmp_path}
    with caplog.at_level(logging.WARNING, logger="nas.files"):
        write_json(tmp_path / "f.json", figures)
    back = _strict((tmp_path / "f.json").read_text())
    assert back == {"accuracy": None, "latency": {"ms": [1.0, None], "std": None}, "ok": 0.5, "numpy": None,
                    "path": str(tmp_path)}
    assert "4 value(s) were not finite" in caplog.text
    for name in ("accuracy", "latency.ms.1", "latency.std", "numpy"):
        assert name in caplog.text
    assert math.isnan(figures["accuracy"])  # the caller's figures are left as they are
    _strict(to_json(figures))


def test_model_cards_and_latency_tables_are_strict_json(tmp_path, monkeypatch):
    from nas.export import card
    from nas.latency.table import LatencyTable
    monkeypatch.setattr(card, "render_markdown", lambda c: "")  # the JSON is what is checked here
    card.write_card({"latency": {"batch_1": {"median_ms": float("nan")}}}, tmp_path)
    assert _strict((tmp_path / "model_card.json").read_text())["latency"]["batch_1"]["median_ms"] is None
    table = LatencyTable(fingerprint={"device": "cpu"}, space={"name": "darts", "options": {}, "image_shape": [1, 8, 8]},
                         measure={"warmup": 1, "repeats": 1}, entries={"op": {"ms": float("nan")}}, fixed={})
    table.save(tmp_path / "table.json")
    assert _strict((tmp_path / "table.json").read_text())["entries"]["op"]["ms"] is None


def test_every_json_file_is_written_through_the_strict_writer():
    """json.dump(s) in the libraries only where no file of figures is written: the strict writer itself, the
    dataset cache's key (a hash), a genotype (names and integers; search_spaces cannot import nas), the CLI's
    stdout."""
    allowed = {"nas/files.py", "meta/data/cache.py", "search_spaces/genotypes.py", "nas/cli.py"}
    found = {str(p.relative_to(REPO)) for top in ("nas", "meta", "search_spaces") for p in (REPO / top).rglob("*.py")
             if re.search(r"json\.dumps?\(", p.read_text())}
    assert found <= allowed, found - allowed
