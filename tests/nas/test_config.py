import pytest
import yaml

from nas.checks import load_config
from nas.config import EpisodeConfig, RunConfig, apply_override
from nas.errors import ConfigError


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_defaults_and_round_trip(tmp_path):
    cfg = load_config(None)
    assert isinstance(cfg, RunConfig) and cfg.eval.tasks == [EpisodeConfig(5, 1, 15)]
    again = load_config(write(tmp_path, cfg.to_dict()))
    assert again == cfg


def test_overrides_reach_any_field(tmp_path):
    p = write(tmp_path, {"train": {"steps": 10}, "eval": {"tasks": [{"n_way": 5}, {"n_way": 20}]}})
    cfg = load_config(p, ["train.steps=30", "train.episode.n_way=10", "train.options.lr=0.01",
                          "eval.tasks.1.k_shot=5", "data.options={train_classes: 50}", "device=cpu"])
    assert cfg.train.steps == 30 and cfg.train.episode.n_way == 10
    assert cfg.train.options == {"lr": 0.01}
    assert cfg.eval.tasks[1] == EpisodeConfig(20, 5, 15)
    assert cfg.data.options == {"train_classes": 50} and cfg.device == "cpu"


def test_apply_override_parses_yaml_values():
    d = {}
    apply_override(d, "a.b=3")
    apply_override(d, "a.c=0.5")
    apply_override(d, "a.d=true")
    apply_override(d, "a.e=[1, 2]")
    apply_override(d, "a.f=hello=world")
    assert d == {"a": {"b": 3, "c": 0.5, "d": True, "e": [1, 2], "f": "hello=world"}}
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_override(d, "novalue")
    with pytest.raises(ConfigError, match="not an index"):
        apply_override(d, "a.e.5=1")


@pytest.mark.parametrize("data, overrides, pattern", [
    ({"train": {"stepz": 5}}, [], r"train.stepz: unknown key; the keys of train are learner, options, steps"),
    ({"train": {"steps": "many"}}, [], r"train.steps: expected an integer, got a string 'many'"),
    ({"train": {"steps": 2.5}}, [], r"train.steps: expected an integer"),
    ({"data": {"download": "yes"}}, [], r"data.download: expected a boolean"),
    ({"eval": {"tasks": {"n_way": 5}}}, [], r"eval.tasks: expected a list"),
    ({}, ["train.episode.n_wya=3"], r"train.episode.n_wya: unknown key"),
    ({}, ["train.steps=-1"], r"train.steps: must be at least 0, got -1"),
    ({}, ["train.learner=finetune"], r"train.steps: the finetune learner does not meta-train; set train.steps=0"),
    ({}, ["train.episode.n_way=1"], r"train.episode.n_way: must be at least 2"),
    ({}, ["train.learner=finetune", "train.steps=0", "train.amp=true"],
     r"train.amp: the finetune learner does not run in mixed precision \(those that do: .*protonet"),
    ({}, ["data.dataset=imagenet21k"], r"data.dataset: unknown name 'imagenet21k'; choose one of .*omniglot"),
    ({}, ["model.name=vit"], r"model.name: unknown name 'vit'"),
    ({}, ["train.learner=reptile"], r"train.learner: unknown name 'reptile'"),
    ({}, ["train.options.lrr=0.1"], r"train.options.lrr: unknown option of learner protonet; its options are lr"),
    ({}, ["train.options.lr=fast"], r"train.options.lr: expected float"),
    ({}, ["model.options.hidden=[3]"], r"model.options.hidden: expected int"),
    ({}, ["data.options.hue=1"], r"data.options.hue: unknown option of dataset synthetic"),
    ({}, ["eval.bn_mode=magic"], r"eval.bn_mode: 'magic' is not a BatchNorm mode"),
    ({}, ["device=tpu"], r"device: 'tpu' is not a device"),
    ({}, ["train.options.loss=focal_typo"], r"train.options.loss: unknown loss"),
    ({}, ["pretrain.sampling=balanced"], r"pretrain.sampling: 'balanced' is not a sampling; choose one of instance"),
    (["a", "list"], [], r"must hold a mapping"),
])
def test_bad_configs_name_the_key_and_file(tmp_path, data, overrides, pattern):
    p = write(tmp_path, data)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(p, overrides)
    assert str(info.value).startswith(str(p))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: 3\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_shipped_config_is_valid(tmp_path):
    from pathlib import Path
    from search_spaces import build_network, load_genotype
    shipped = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))
    genotypes = [p for p in shipped if p.parent.name == "genotypes"]  # searched cells kept with their results
    for path in genotypes:
        build_network(load_genotype(path), 1)
    configs = [p for p in shipped if p not in genotypes]
    assert len(configs) >= 7 and genotypes
    for path in configs:
        load_config(path)  # raises ConfigError naming the key if a shipped config is wrong
    from nas.errors import ConfigError
    from nas.tuning.space import check_space
    tuned = [p for p in configs if p.parent.name == "tune"]
    assert len(tuned) >= 3
    for path in tuned:
        if "latency" in path.name:  # needs a table built on the machine: refused without one, valid with one
            with pytest.raises(ConfigError, match="needs search.latency.table"):
                check_space(load_config(path))
            table = tmp_path / "table.json"  # the config checks that the table exists; the search reads it
            table.write_text("{}")
            assert check_space(load_config(path, [f"search.latency.table={table}"]))
            continue
        assert check_space(load_config(path))


def test_scientific_notation_is_a_number_in_files_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  options: {lr: 1e-3}\npretrain:\n  crt: {lr: 5e-2}\n")
    cfg = load_config(p, ["train.options.weight_decay=1e-4", "search.sampler_options={w_lr: 1e9}"])
    assert cfg.train.options == {"lr": 0.001, "weight_decay": 0.0001}
    assert cfg.pretrain.crt.lr == 0.05 and cfg.search.sampler_options == {"w_lr": 1e9}
