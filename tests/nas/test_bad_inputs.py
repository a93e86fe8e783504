"""Bad input through the command line (issue #21): one message naming the problem and the fix, exit code 2, no
traceback, nothing overwritten and no run folder left behind."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from nas import cli
from nas.checks import load_config

from ..meta.test_bad_images import BAD, CLASSES, PER_CLASS, _folder
from .test_cli import TINY, fsnas, tiny_config  # noqa: F401  (tiny_config is a fixture)
from .test_search import SEARCH

SPOS = {**SEARCH, "search": {**SEARCH["search"], "sampler": "spos", "steps": 4, "checkpoint_every": 4,
                             "evolution": {"population": 2, "generations": 1, "top_k": 1, "eval_episodes": 2,
                                           "bn_batches": 1}}}


def refused(capsys, *args, says: str | list[str]) -> str:
    assert fsnas(*args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("fsnas: error:") == 1, err
    for text in [says] if isinstance(says, str) else says:
        assert text in err, err
    return err


def tiny_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


# -- 1. unreadable images ----------------------------------------------------------------------------
def test_unreadable_images_name_the_files_or_are_skipped_and_counted(tmp_path, capsys, caplog):
    root, splits = _folder(tmp_path / "data")
    config = tmp_path / "folder.yaml"
    config.write_text(yaml.safe_dump({
        "name": "folder", "device": "cpu",
        "data": {"dataset": "image_folder", "root": str(root), "split_dir": str(splits), "image_size": 28,
                 "options": {"folder": "imgs"}},
        "model": {"name": "conv4", "options": {"hidden": 8}},
        "train": {"steps": 2, "log_every": 1, "checkpoint_every": 2, "episode": {"n_way": 3, "k_shot": 1, "n_query": 1}},
        "eval": {"episodes": 2, "tasks": [{"n_way": 2, "k_shot": 1, "n_query": 1}]}}))
    out = tmp_path / "run"
    refused(capsys, "retrain", config, "--out", out,
            says=[f"3 of {len(CLASSES) * PER_CLASS + 1} image files cannot be decoded", "data.skip_bad_images",
                  *(str(root / "imgs" / n) for n in BAD)])
    assert not out.exists()
    assert fsnas("retrain", config, "--out", out, "data.skip_bad_images=true") == 0
    data = json.loads((out / "summary.json").read_text())["data"]
    assert data["skipped_images"] == 3 and data["images"] == len(CLASSES) * PER_CLASS - 2
    assert "data.skip_bad_images: 3 unreadable image files left out" in caplog.text
    refused(capsys, "retrain", tiny_file(tmp_path), "data.skip_bad_images=true", "--out", tmp_path / "r2",
            says="data.skip_bad_images: dataset synthetic is not read from image files")


# -- 2. torch files that are not plain tensors ----------------------------------------------------------
class Payload:
    def __reduce__(self):
        return (os.system, ("echo unpickled > /dev/null",))


@pytest.fixture(scope="module")
def spos_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spos")
    config = tmp / "spos.yaml"
    config.write_text(yaml.safe_dump(SPOS))
    assert fsnas("search", config, "--out", tmp / "run") == 0
    return config, tmp / "run"


@pytest.mark.parametrize("damage", ["pickle", "truncated"])
def test_a_supernet_that_is_a_pickle_or_truncated_is_refused(spos_run, tmp_path, capsys, damage):
    config, run = spos_run
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.yaml").write_bytes((run / "config.yaml").read_bytes())
    (copy / "checkpoints").mkdir()
    checkpoint = copy / "checkpoints" / "search.pt"
    if damage == "pickle":
        torch.save({"step": 4, "supernet": Payload()}, checkpoint)
        why = "it holds pickled Python objects"
    else:
        checkpoint.write_bytes((run / "checkpoints" / "search.pt").read_bytes()[:1000])
        why = "it is truncated or not a file torch.save wrote"
    before = checkpoint.read_bytes()
    out = tmp_path / "evolved"
    refused(capsys, "search", config, f"search.supernet={copy}", "--out", out,
            says=[f"search.supernet: {checkpoint} is not a readable fsnas search checkpoint: {why}",
                  "never unpickled as code", "Give search.supernet the folder of a finished fsnas search"])
    assert not out.exists() and checkpoint.read_bytes() == before
    # every user-supplied torch file goes through the same loader: model.weights too
    refused(capsys, "retrain", tiny_file(tmp_path), f"model.weights={checkpoint}", "--out", out,
            says=[f"model.weights: {checkpoint} is not a readable state dict: {why}"])
    assert not out.exists()


# -- 3. --out that is a file, inside a file, or unwritable ---------------------------------------------
def _commands(tmp_path, out):
    """Every command that takes --out, with arguments that are otherwise fine (up to where --out is checked)."""
    config = tiny_file(tmp_path)
    trained = tmp_path / "trained"
    trained.mkdir(exist_ok=True)
    (trained / "config.yaml").write_text(yaml.safe_dump(TINY))
    genotype = tmp_path / "conv4.yaml"
    genotype.write_text("kind: fixed\nname: conv4\noptions: {}\n")
    return {"retrain": ["retrain", config, "--out", out], "run": ["run", config, "--out", out],
            "search": ["search", config, "--out", out], "evaluate": ["evaluate", trained, "--out", out],
            "export": ["export", "conv4", "--out", out], "tune": ["tune", config, "--out", out],
            "latency build": ["latency", "build", "--space", config, "--out", out],
            "latency measure": ["latency", "measure", genotype, "--out", out],
            "latency validate": ["latency", "validate", tmp_path / "table.json", "--out", out]}


COMMANDS = ["retrain", "run", "search", "evaluate", "export", "tune", "latency build", "latency measure",
            "latency validate"]


@pytest.mark.parametrize("command", COMMANDS)
def test_out_that_is_a_file_or_inside_one_is_refused_by_every_command(tmp_path, capsys, command):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    says = "exists; nothing was overwritten" if command.startswith("latency b") or command.endswith("measure") \
        else "is a file, not a folder; nothing was overwritten"
    refused(capsys, *_commands(tmp_path, a_file)[command], says=f"--out {a_file} {says}")
    refused(capsys, *_commands(tmp_path, a_file / "sub")[command],
            says=f"--out {a_file / 'sub'} cannot be created: {a_file} is a file, not a folder")
    assert a_file.read_text() == "keep me"


@pytest.mark.parametrize("command", COMMANDS)
def test_out_in_a_read_only_folder_is_refused_by_every_command(tmp_path, capsys, command):
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only mode does not stop root's writes, so there is nothing to refuse")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(capsys, *_commands(tmp_path, locked / "out" / "deeper")[command],
                says=f"cannot be created: {locked} is not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# -- 5. overrides after options --------------------------------------------------------------------------
def test_overrides_after_options_give_the_same_config(tiny_config, tmp_path, capsys):  # noqa: F811
    parser = cli.build_parser()
    before = cli.parse_args(parser, ["retrain", str(tiny_config), "train.steps=2", "eval.episodes=3", "--no-eval",
                                     "--out", "x"])
    after = cli.parse_args(parser, ["retrain", str(tiny_config), "--no-eval", "train.steps=2", "--out", "x",
                                    "eval.episodes=3"])
    assert vars(before).keys() == vars(after).keys()
    assert before.overrides == after.overrides == ["train.steps=2", "eval.episodes=3"]
    assert load_config(tiny_config, after.overrides) == load_config(tiny_config, before.overrides)
    out = tmp_path / "run"
    assert fsnas("retrain", tiny_config, "--out", out, "train.steps=2", "--no-eval", "train.val_every=0") == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["steps"] == 2
    with pytest.raises(SystemExit) as info:  # anything else is refused with the command's own usage line
        fsnas("retrain", tiny_config, "--out", tmp_path / "r2", "stray")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fsnas retrain" in err and "unrecognized arguments: stray" in err
    assert not (tmp_path / "r2").exists()


# -- 6. learning rates in scientific notation -------------------------------------------------------------
@pytest.mark.parametrize("text", ["1e9", "1E9", "1e+9", "1.e9", ".5e3", "5e-4"])
def test_scientific_notation_is_a_float_in_files_and_overrides(tmp_path, text):
    path = tmp_path / "lr.yaml"
    path.write_text(f"train:\n  options: {{lr: {text}}}\n")
    from_file = load_config(path).train.options["lr"]
    from_override = load_config(None, [f"train.options.lr={text}"]).train.options["lr"]
    assert type(from_file) is float and type(from_override) is float and from_file == from_override == float(text)


# -- a backbone the images are too small for ------------------------------------------------------------
@pytest.mark.parametrize("override", ["model.options.layers=6", "data.image_size=12"])
def test_a_backbone_too_deep_for_the_images_is_refused_before_the_run_folder(tiny_config, tmp_path, capsys,
                                                                             override):
    out = tmp_path / "run"
    refused(capsys, "retrain", tiny_config, override, "--out", out,
            says=["model: the backbone cannot run on", "give a larger data.image_size or a shallower backbone"])
    assert not out.exists()
