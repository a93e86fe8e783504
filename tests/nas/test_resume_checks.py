"""--resume checks what it resumes: a finished run is left as it is; a config.yaml edited in a key that is not
safe to change is refused naming the keys; safe keys (evaluation, learning rates) may change."""

import pytest
import yaml

from nas.resume import changed_keys, safe_to_change

from ..conftest import kill_after_first_checkpoint
from .test_cli import fsnas, tiny_config  # noqa: F401  (tiny_config is a fixture)

OVERRIDES = ["train.steps=60", "train.checkpoint_every=10", "train.log_every=10", "train.val_every=0"]


@pytest.fixture
def killed_run(tiny_config, tmp_path):
    run = tmp_path / "run"
    kill_after_first_checkpoint(["retrain", str(tiny_config), *OVERRIDES, "--no-eval", "--out", str(run)],
                                run / "checkpoints" / "last.pt")
    assert not (run / "model.pt").exists(), "the run finished before it could be killed"
    return run


def edit(run, section, key, value):
    config = yaml.safe_load((run / "config.yaml").read_text())
    node = config
    for part in section.split("."):
        node = node[part]
    node[key] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_changed_config_is_refused_with_the_keys_that_differ(killed_run, capsys):
    edit(killed_run, "train.episode", "n_way", 10)
    edit(killed_run, "train", "steps", 30)
    before = (killed_run / "metrics.jsonl").read_bytes()
    assert fsnas("retrain", "--resume", killed_run, "--no-eval") == 2
    err = capsys.readouterr().err
    assert "differs from the config its last checkpoint was made with in train.episode.n_way, train.steps" in err
    assert (killed_run / "metrics.jsonl").read_bytes() == before and not (killed_run / "model.pt").exists()


def test_safe_keys_may_change_and_a_finished_run_is_left_alone(killed_run, capsys):
    edit(killed_run, "eval", "episodes", 30)
    edit(killed_run, "train.options", "lr", 0.001)
    assert fsnas("retrain", "--resume", killed_run) == 0
    finished = {p: p.read_bytes() for p in killed_run.rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    assert fsnas("retrain", "--resume", killed_run) == 0
    assert "is finished" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in killed_run.rglob("*") if p.is_file() and p.name != ".lock"} == finished


def test_changed_keys_and_what_is_safe():
    old = {"train": {"steps": 10, "options": {"lr": 0.1}}, "eval": {"episodes": 600}}
    new = {"train": {"steps": 20, "options": {"lr": 0.01, "lr_step": 5}}, "eval": {"episodes": 100}}
    assert changed_keys(old, new) == ["eval.episodes", "train.options.lr", "train.options.lr_step", "train.steps"]
    assert [safe_to_change(k) for k in changed_keys(old, new)] == [True, True, True, False]
    assert safe_to_change("search.sampler_options.w_lr") and not safe_to_change("search.space_options.channels")
