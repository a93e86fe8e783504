"""A diverging run stops with exit code 3 before it saves non-finite weights, keeps its last good checkpoint,
and continues from it after the learning rate is lowered; learning rates are checked; JSON stays JSON."""

import json
import math

import pytest
import torch
import yaml

from nas.divergence import first_non_finite
from nas.runs import RunDir, to_json

from .test_cli import fsnas, tiny_config  # noqa: F401  (tiny_config is a fixture)
from .test_search import SEARCH, search_config  # noqa: F401  (search_config is a fixture)

EXPLODE = ["train.options.lr_step=20", "train.options.lr_gamma=1.0e+6", "train.steps=120", "train.checkpoint_every=10",
           "train.val_every=0", "train.log_every=10"]


def strict_json(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def test_a_diverging_retrain_keeps_its_last_good_checkpoint_and_resumes_from_it(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert fsnas("retrain", tiny_config, *EXPLODE, "--out", run) == 3
    err = capsys.readouterr().err
    assert "meta-train:" in err and "non-finite at step" in err and "--resume" in err
    kept = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert first_non_finite(kept) is None and 20 <= kept["step"] < 120
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()
    for line in (run / "metrics.jsonl").read_text().splitlines():
        strict_json(line)

    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["options"]["lr_gamma"] = 1.0  # the fix the message asks for
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert fsnas("retrain", "--resume", run, "--no-eval") == 0
    steps = [r["step"] for r in RunDir(run).read_metrics() if r["phase"] == "train"]
    assert steps == list(range(10, 121, 10))  # continued from the kept checkpoint, nothing twice
    weights = torch.load(run / "model.pt", weights_only=True)
    assert first_non_finite(weights) is None
    strict_json((run / "summary.json").read_text())


@pytest.mark.parametrize("sampler", ["spos", "darts"])
def test_a_diverging_search_writes_no_genotype(search_config, tmp_path, capsys, sampler):
    out = tmp_path / sampler
    assert fsnas("search", search_config, f"search.sampler={sampler}", "search.sampler_options={w_lr: 1.0e+30}",
                 "--out", out) == 3
    assert "search: the loss became nan" in capsys.readouterr().err
    assert not (out / "genotype.yaml").exists() and not (out / "candidates.json").exists()


@pytest.mark.parametrize("override", ["train.options.lr=.inf", "train.options.lr=0", "train.options.lr=-0.1",
                                      "search.sampler_options.w_lr=.nan", "search.sampler_options.arch_lr=0",
                                      "pretrain.crt.lr=.inf"])
def test_learning_rates_must_be_finite_and_positive(search_config, override, capsys):
    assert fsnas("retrain", search_config, override) == 2
    assert "a learning rate must be a finite number above 0" in capsys.readouterr().err


def test_json_is_strict_and_non_finite_state_is_found():
    assert to_json({"loss": float("nan"), "acc": [1.5, float("inf")], "t": torch.tensor(2.0)}) == \
        '{"loss": null, "acc": [1.5, null], "t": 2.0}'
    assert first_non_finite({"model": {"w": torch.ones(3)}, "opt": [{"m": torch.tensor([1.0, math.inf])}]}) == "opt.0.m"
    assert first_non_finite({"w": torch.ones(2), "steps": torch.tensor([3]), "best": None}) is None
