"""The fsnas command line, end to end on small synthetic runs: run folders, errors, evaluate, resume."""

import json

import pytest
import torch
import yaml

from nas import cli
from nas.checks import load_config
from nas.pipeline import prepare, retrain
from nas.runs import RunDir

from ..conftest import kill_after_first_checkpoint

TINY = {
    "name": "tiny", "seed": 0, "device": "cpu",
    "data": {"dataset": "synthetic", "options": {"train_classes": 40, "val_classes": 10, "test_classes": 10,
                                                 "images_per_class": 20}},
    "model": {"name": "conv4", "options": {"hidden": 16}},
    "train": {"learner": "protonet", "options": {"lr": 0.002}, "steps": 12, "log_every": 4, "checkpoint_every": 4,
              "val_every": 6, "val_episodes": 10, "episode": {"n_way": 5, "k_shot": 1, "n_query": 5}},
    "eval": {"episodes": 20, "tasks": [{"n_way": 5, "k_shot": 1, "n_query": 5}, {"n_way": 5, "k_shot": 5, "n_query": 5}]},
}


@pytest.fixture
def tiny_config(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def fsnas(*args):
    return cli.main(["-q", *map(str, args)])


def test_help_for_every_command(capsys):
    for name in [None, "run", "search", "retrain", "evaluate", "export", "data", "latency", "tune"]:
        with pytest.raises(SystemExit) as info:
            cli.main([name, "--help"] if name else ["--help"])
        assert info.value.code == 0
    assert "retrain" in capsys.readouterr().out


def test_run_writes_a_complete_run_folder(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert fsnas("run", tiny_config, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "synthetic test 5-way 1-shot:" in printed and "summary.json" in printed
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["train"]["steps"] == 12 and cfg["eval"]["split"] == "test"  # resolved: defaults included
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["phase"] == "train"] == [4, 8, 12]
    assert [r["step"] for r in lines if r["phase"] == "val"] == [6, 12]
    assert len([r for r in lines if r["phase"] == "eval"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy", "ci95", "episodes", "n_way", "k_shot", "dataset", "split", "bn_mode"):
        assert key in summary
    assert summary["episodes"] == 20 and summary["dataset"] == "synthetic" and summary["split"] == "test"
    assert [r["k_shot"] for r in summary["results"]] == [1, 5]
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["ci95"] > 0
    assert (out / "checkpoints" / "last.pt").exists() and (out / "model.pt").exists()
    torch.load(out / "checkpoints" / "last.pt", weights_only=True)  # plain tensors only


def test_evaluate_a_trained_run(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert fsnas("retrain", tiny_config, "--out", out, "--no-eval") == 0
    assert "accuracy" not in json.loads((out / "summary.json").read_text())
    ev = tmp_path / "ev"
    assert fsnas("evaluate", out, "eval.episodes=30", "eval.tasks=[{n_way: 3, k_shot: 2, n_query: 4}]",
                 "--out", ev) == 0
    summary = json.loads((ev / "summary.json").read_text())
    assert (summary["episodes"], summary["n_way"], summary["k_shot"]) == (30, 3, 2)
    assert "synthetic test 3-way 2-shot" in capsys.readouterr().out
    # the same trained weights and seeded episodes give the same figure again
    ev2 = tmp_path / "ev2"
    fsnas("evaluate", out, "eval.episodes=30", "eval.tasks=[{n_way: 3, k_shot: 2, n_query: 4}]", "--out", ev2)
    assert json.loads((ev2 / "summary.json").read_text())["accuracy"] == summary["accuracy"]
    assert fsnas("evaluate", out, "train.steps=3") == 2  # would change the trained model
    assert fsnas("evaluate", out, "eval.inner_steps=2", "--out", tmp_path / "ev3") == 2  # ProtoNet has no inner loop
    assert "has no inner loop at test time" in capsys.readouterr().err and not (tmp_path / "ev3").exists()


def bad_run(tmp_path, capsys, *args):
    code = fsnas(*args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("fsnas: error:")
    return err


def test_bad_input_exits_2_with_one_clear_message(tiny_config, tmp_path, capsys, monkeypatch):
    out = tmp_path / "never"
    err = bad_run(tmp_path, capsys, "run", tiny_config, "eval.tasks.0.n_way=20", "--out", out)
    assert "eval.tasks.0: n_way 20 is larger than the 10 classes of split 'test' of synthetic" in err
    assert str(tiny_config) in err
    err = bad_run(tmp_path, capsys, "run", tiny_config, "train.episode.k_shot=10", "train.episode.n_query=15")
    assert "train.episode: k_shot + n_query = 25 is larger than the 20 images" in err
    err = bad_run(tmp_path, capsys, "run", tiny_config, "train.stepz=3")
    assert "train.stepz: unknown key" in err
    err = bad_run(tmp_path, capsys, "run", tiny_config, "train.steps=lots")
    assert "train.steps: expected an integer" in err
    err = bad_run(tmp_path, capsys, "run", tiny_config, "data.dataset=omniglot", "data.options={}",
                  f"data.root={tmp_path / 'missing'}")
    assert "data.root:" in err and "does not exist" in err
    monkeypatch.delenv("FSNAS_DATA_ROOT", raising=False)
    err = bad_run(tmp_path, capsys, "run", tiny_config, "data.dataset=omniglot", "data.options={}")
    assert "needs a data root" in err
    err = bad_run(tmp_path, capsys, "run", tmp_path / "missing.yaml")
    assert "does not exist" in err
    assert not out.exists()  # nothing was created for rejected input


def test_existing_output_is_never_overwritten(tiny_config, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    err = bad_run(tmp_path, capsys, "run", tiny_config, "--out", out)
    assert "already exists" in err and "--resume" in err
    assert (out / "precious.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_data_list_and_describe(capsys):
    assert fsnas("data", "list") == 0
    listed = capsys.readouterr().out
    for name in ("omniglot", "mini_imagenet", "cifar_fs", "fc100", "image_folder", "synthetic"):
        assert name in listed
    assert fsnas("data", "describe", "synthetic", "data.options={train_classes: 30, val_classes: 5, "
                                                 "test_classes: 7, images_per_class: 12}") == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["splits"]["train"]["classes"] == 30 and desc["splits"]["test"]["classes"] == 7
    assert desc["splits"]["val"]["images"] == 60


def test_data_describe_omniglot(omniglot_root, capsys):
    assert fsnas("data", "describe", "omniglot", f"data.root={omniglot_root}") == 0
    desc = json.loads(capsys.readouterr().out)
    assert {k: v["base_classes"] for k, v in desc["splits"].items()} == {"train": 1028, "val": 172, "test": 423}


def _weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_config, tmp_path):
    overrides = ["train.steps=150", "train.checkpoint_every=10", "train.val_every=50", "train.log_every=10"]
    ref = tmp_path / "ref"
    cfg = load_config(tiny_config, overrides)
    prepared = prepare(cfg)
    ds, device = prepared.ds, prepared.device
    retrain(cfg, RunDir.create(cfg, ref), ds, device, progress=False, evaluate_after=False)

    killed = tmp_path / "killed"
    kill_after_first_checkpoint(["retrain", str(tiny_config), *overrides, "--no-eval", "--out", str(killed)],
                                killed / "checkpoints" / "last.pt")
    state = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < state["step"] < 150, "the run finished before it could be killed"
    assert not (killed / "model.pt").exists()

    assert fsnas("retrain", "--resume", killed, "--no-eval") == 0
    a, b = _weights(ref), _weights(killed)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"killed at step {state['step']}; weights differ: {differ[:3]}"
    steps = [r["step"] for r in RunDir(killed).read_metrics() if r["phase"] == "train"]
    assert steps == list(range(10, 151, 10)), f"killed at step {state['step']}: {steps}"  # none twice


def test_backbones_from_genotype_files(tiny_config, tmp_path):
    """Conv-4 through a genotype file trains exactly as Conv-4 by name; a DARTS genotype trains too."""
    from search_spaces import CellGenotype, DartsGenotype, FixedGenotype
    FixedGenotype("conv4", {"hidden": 16}).save(tmp_path / "conv4.yaml")
    assert fsnas("retrain", tiny_config, "--out", tmp_path / "by_name", "--no-eval") == 0
    assert fsnas("retrain", tiny_config, f"model.genotype={tmp_path / 'conv4.yaml'}", "--out",
                 tmp_path / "by_genotype", "--no-eval") == 0
    a, b = _weights(tmp_path / "by_name"), _weights(tmp_path / "by_genotype")
    assert all(torch.equal(a[k], b[k]) for k in a)
    cell = CellGenotype(((("sep_conv_3x3", 0), ("skip_connect", 1)), (("conv_3x3", 2), ("max_pool_3x3", 0))))
    DartsGenotype(normal=cell, reduce=cell, channels=4, cells=3).save(tmp_path / "darts.yaml")
    out = tmp_path / "darts_run"
    assert fsnas("run", tiny_config, f"model.genotype={tmp_path / 'darts.yaml'}", "--out", out) == 0
    assert (out / "genotype.yaml").read_text() == (tmp_path / "darts.yaml").read_text()
    assert fsnas("evaluate", out, "--out", tmp_path / "darts_eval") == 0


def test_bad_genotype_file(tiny_config, tmp_path, capsys):
    err = bad_run(tmp_path, capsys, "run", tiny_config, f"model.genotype={tmp_path / 'nope.yaml'}")
    assert "model.genotype:" in err and "does not exist" in err
    (tmp_path / "bad.yaml").write_text("space: darts\nnormal: {nodes: [[[warp, 0]]]}\nreduce: {nodes: [[[warp, 0]]]}\n")
    err = bad_run(tmp_path, capsys, "run", tiny_config, f"model.genotype={tmp_path / 'bad.yaml'}")
    assert "unknown op 'warp'" in err


@pytest.mark.parametrize("text, words", [
    ("space: darts\nnormal: {nodes: [[[sep_conv_3x3, a]]]}\nreduce: {nodes: [[[sep_conv_3x3, 0]]]}\n",
     "normal.nodes[0][0][1]: expected an integer, got 'a'"),
    ("space: darts\nnormal: {nodes: [[[sep_conv_3x3, 0]]]}\n", "reduce: missing"),
    ("space: blocks\nstages: [{channels: 8, stride: 1, ops: mbconv_k3_e3}]\n", "stages[0].ops: expected a list"),
    ("space: darts\nnormal: {nodes: [[[sep_conv_3x3, 0]\n", "not YAML (line 3, column 1"),
])
def test_malformed_genotype_files_in_every_command(text, words, tiny_config, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    for args in (["retrain", tiny_config, f"model.genotype={bad}", "--out", tmp_path / "r"],
                 ["retrain", tiny_config, "--arch", bad, "--out", tmp_path / "r"],
                 ["export", bad, "--out", tmp_path / "e"], ["latency", "measure", bad, "--repeats", "1"]):
        assert words in bad_run(tmp_path, capsys, *args)
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()


def test_maml_run_saves_its_head_and_evaluate_reproduces_it(tiny_config, tmp_path, capsys):
    maml = ["train.learner=maml", "train.options={steps: 1, order: first, anil: true}",
            "eval.tasks=[{n_way: 5, k_shot: 1, n_query: 5}]", "eval.bn_mode=transductive"]
    run = tmp_path / "maml"
    assert fsnas("run", tiny_config, *maml, "--out", run) == 0
    assert (run / "learner.pt").is_file()
    head = torch.load(run / "learner.pt", weights_only=True)["meta"]
    assert set(head) == {"head.weight", "head.bias"}
    first = json.loads((run / "summary.json").read_text())
    assert fsnas("evaluate", run, "--out", tmp_path / "again") == 0
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["accuracy"] == first["accuracy"] and again["results"][0]["inner_steps"] == 1
    # test-time inner steps are an evaluation setting: the trained steps given explicitly change nothing
    assert fsnas("evaluate", run, "eval.inner_steps=1", "--out", tmp_path / "one") == 0
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["accuracy"] == first["accuracy"]
    assert fsnas("evaluate", run, "eval.inner_steps=0", "--out", tmp_path / "zero") == 0
    assert json.loads((tmp_path / "zero" / "summary.json").read_text())["results"][0]["inner_steps"] == 0
    capsys.readouterr()
    assert fsnas("run", tiny_config, *maml[:2], "eval.tasks.0.n_way=3", "--out", tmp_path / "bad") == 2
    assert "train.episode.n_way=3" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_hard_task_meta_batch_trains_on_failure_classes(tiny_config, tmp_path):
    run = tmp_path / "ht"
    assert fsnas("retrain", tiny_config, "train.meta_batch=2", "train.hard_tasks=1", "--no-eval", "--out", run) == 0
    train = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["phase"] == "train"]
    assert train and all(0.0 <= r["hard_accuracy"] <= 1.0 for r in train)


def test_mtl_starts_from_given_weights_and_keeps_them_frozen(tiny_config, tmp_path, capsys):
    base = tmp_path / "base"
    assert fsnas("retrain", tiny_config, "train.steps=2", "--no-eval", "--out", base) == 0
    mtl = tmp_path / "mtl"
    assert fsnas("retrain", tiny_config, "train.learner=mtl", "train.options={steps: 2}", "train.val_every=0",
                 f"model.weights={base / 'model.pt'}", "eval.tasks=[{n_way: 5, k_shot: 1, n_query: 5}]",
                 "--out", mtl) == 0
    start = torch.load(base / "model.pt", weights_only=True)
    after = torch.load(mtl / "model.pt", weights_only=True)
    assert all(torch.equal(start[k], after[k]) for k in start if "running" not in k and "num_batches" not in k)
    assert set(torch.load(mtl / "learner.pt", weights_only=True)) == {"meta", "ss"}
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert fsnas("retrain", tiny_config, f"model.weights={tmp_path / 'junk.pt'}", "--out", tmp_path / "bad") == 2
    assert "model.weights" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_pretraining_phase_before_mtl(tiny_config, tmp_path):
    run = tmp_path / "pre"
    assert fsnas("retrain", tiny_config, "pretrain.steps=6", "pretrain.batch_size=16", "pretrain.log_every=3",
                 "train.learner=mtl", "train.options={steps: 2}", "train.steps=2", "train.val_every=0", "--no-eval",
                 "--out", run) == 0
    phases = [json.loads(x)["phase"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert phases[:2] == ["pretrain", "pretrain"] and "train" in phases
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pretrain"]["steps"] == 6 and summary["pretrain"]["classes"] == 40
    assert torch.load(run / "checkpoints" / "pretrain.pt", weights_only=True)["step"] == 6
    assert fsnas("retrain", tiny_config, "pretrain.options={momentum: fast}", "--out", tmp_path / "bad") == 2


def test_pretraining_resumes_after_sigkill_to_the_same_weights(tiny_config, tmp_path):
    overrides = ["pretrain.steps=120", "pretrain.batch_size=32", "pretrain.checkpoint_every=5", "pretrain.log_every=5",
                 "train.steps=2", "train.val_every=0"]
    ref = tmp_path / "ref"
    assert fsnas("retrain", tiny_config, *overrides, "--no-eval", "--out", ref) == 0
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(["retrain", str(tiny_config), *overrides, "--no-eval", "--out", str(killed)],
                                killed / "checkpoints" / "pretrain.pt")
    step = torch.load(killed / "checkpoints" / "pretrain.pt", weights_only=True)["step"]
    assert 0 < step < 120, "pretraining finished before it could be killed"
    assert fsnas("retrain", "--resume", killed, "--no-eval") == 0
    a, b = _weights(ref), _weights(killed)
    assert [k for k in a if not torch.equal(a[k], b[k])] == [], f"killed at pretraining step {step}"
    steps = [r["step"] for r in RunDir(killed).read_metrics() if r["phase"] == "pretrain"]
    assert steps == list(range(5, 121, 5))


def test_fine_tune_baseline_runs_on_a_pretrained_backbone_without_meta_training(tiny_config, tmp_path):
    run = tmp_path / "ft"
    assert fsnas("retrain", tiny_config, "pretrain.steps=40", "pretrain.batch_size=32", "pretrain.log_every=20",
                 "train.learner=finetune", "train.options={steps: 50}", "train.steps=0", "train.val_every=0",
                 "--out", run) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train"]["steps"] == 0 and summary["train"]["final_loss"] is None
    assert [r["phase"] for r in RunDir(run).read_metrics()].count("train") == 0
    assert summary["accuracy"] > 0.4  # 5-way: chance 0.2
    assert torch.equal(_weights(run)["features.0.0.weight"],
                       torch.load(run / "checkpoints" / "pretrain.pt", weights_only=True)["trainer"]["backbone"]
                       ["features.0.0.weight"])  # frozen: the evaluated backbone is the pretrained one
    assert fsnas("evaluate", run, "--out", tmp_path / "ev") == 0
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["accuracy"] == summary["accuracy"]


def test_pretraining_with_a_long_tail_loss_takes_its_class_counts_from_the_data(tiny_config, tmp_path, capsys):
    run = tmp_path / "ldam"
    assert fsnas("retrain", tiny_config, "pretrain.steps=4", "pretrain.batch_size=16", "pretrain.log_every=2",
                 "pretrain.options={loss: ldam, loss_options: {drw_start: 0.5}}", "train.steps=1", "train.val_every=0",
                 "--no-eval", "--out", run) == 0
    assert torch.load(run / "checkpoints" / "pretrain.pt", weights_only=True)["trainer"]["t"] == 4
    assert fsnas("retrain", tiny_config, "pretrain.steps=4", "pretrain.batch_size=16", "pretrain.log_every=2",
                 "pretrain.options={loss: ib, loss_options: {warmup: 0.5}}", "train.steps=1", "train.val_every=0",
                 "--no-eval", "--out", tmp_path / "ib") == 0  # the features reach the loss after the warm-up
    assert fsnas("retrain", tiny_config, "pretrain.steps=4", "pretrain.options={loss: ldam, loss_options: {margin: 1}}",
                 "--out", tmp_path / "bad") == 2
    assert "pretrain.options.loss_options.margin: unknown option" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_long_tailed_pretraining_reports_many_medium_few_on_held_out_images(tiny_config, tmp_path, capsys):
    run = tmp_path / "lt"
    assert fsnas("retrain", tiny_config, "data.long_tail={imbalance: 5, heldout: 5, many: 10, few: 4}",
                 "pretrain.steps=30", "pretrain.batch_size=32", "pretrain.log_every=10",
                 "pretrain.options={loss: balanced_softmax}", "pretrain.tau_norm=1.0", "pretrain.crt={steps: 10}",
                 "train.steps=1",
                 "train.val_every=0",
                 "train.episode={n_way: 5, k_shot: 1, n_query: 1}", "--no-eval", "--out", run) == 0
    base = json.loads((run / "summary.json").read_text())["pretrain"]["base_classes"]
    assert base["images"] == 40 * 5 and base["thresholds"] == {"many": 10, "few": 4}
    assert sum(base["classes"].values()) == 40 and all(base[g] is not None for g in ("many", "medium", "few"))
    assert 0.0 <= base["balanced_accuracy"] <= 1.0 and base["balanced_accuracy"] > 1 / 40  # learned something
    assert [r["phase"] for r in RunDir(run).read_metrics()].count("pretrain_eval") == 1
    tau = json.loads((run / "summary.json").read_text())["pretrain"]["base_classes_tau_norm"]
    assert tau["tau"] == 1.0 and tau["images"] == base["images"]
    crt = json.loads((run / "summary.json").read_text())["pretrain"]["base_classes_crt"]
    assert crt["steps"] == 10 and crt["sampling"] == "class" and crt["images"] == base["images"]
    assert fsnas("retrain", tiny_config, "pretrain.steps=2", "pretrain.crt={steps: 10}", "--out", tmp_path / "no-lt") == 2
    assert "pretrain.crt.steps: reported on held-out base-class images" in capsys.readouterr().err


def test_imbalanced_supports_and_episodic_losses_from_the_config(tiny_config, tmp_path, capsys):
    run = tmp_path / "imb"
    assert fsnas("retrain", tiny_config, "train.steps=3", "train.val_every=0", "eval.episodes=4",
                 "train.episode={n_way: 5, k_shot: 3, n_query: 2, shot_profile: random}",
                 "train.options={loss: ldam, loss_options: {drw_start: 0.5}}",
                 "eval.tasks=[{n_way: 5, k_shot: 3, n_query: 2, shot_profile: step, min_shot: 1}]", "--out", run) == 0
    row = json.loads((run / "summary.json").read_text())["results"][0]
    assert row["shot_profile"] == "step" and row["min_shot"] == 1 and row["episodes"] == 4
    assert fsnas("retrain", tiny_config, "train.episode={n_way: 5, k_shot: 2, n_query: 2, shot_profile: zipf}",
                 "--out", tmp_path / "bad") == 2
    assert "train.episode.shot_profile: unknown profile 'zipf'" in capsys.readouterr().err
    assert fsnas("retrain", tiny_config, "train.options={loss: ib}", "--out", tmp_path / "bad") == 2
    assert "ib loss needs the features" in capsys.readouterr().err
    assert fsnas("retrain", tiny_config, "train.options={loss: focal, loss_options: {gama: 1}}",
                 "--out", tmp_path / "bad") == 2
    assert "train.options.loss_options.gama: unknown option" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
