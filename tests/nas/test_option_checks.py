"""Options of registered factories (spaces, search strategies, fixed models): every bad value is one message
naming the key and the fix, exit code 2, nothing written (issue #21).  Types are checked against the
signature's annotations, values against the checks each class declares (``check_options``)."""

import pytest

from fsnas_core.options import OptionError
from meta.learners import LEARNERS
from meta.losses import LOSSES
from nas import cli
from nas.checks import load_config
from nas.checks.options import factory_params
from nas.checks.types import conforms
from nas.search.strategies import STRATEGIES
from search_spaces import MODELS, SPACES, BlockSupernet, DartsSupernet

QUICK = "configs/quickstart.yaml"
BLOCKS = ["search.space=blocks", "search.space_options={}"]
GDAS = ["search.sampler=gdas", "search.space_options.weighting=gumbel"]

CASES = [  # (overrides, words of the message)
    (["search.space_options.ops=foo"], ["search.space_options.ops: 'foo' is not an op set", "darts, fewshot",
                                        "list of ops"]),
    (["search.space_options.ops=[sep_conv_3x3, warp, zap]"], ["search.space_options.ops: unknown ops 'warp', 'zap'",
                                                               "known ops:"]),
    (["search.space_options.ops=[sep_conv_3x3, sep_conv_3x3]"], ["ops: lists sep_conv_3x3 twice"]),
    (["search.space_options.ops=[none]"], ["ops: needs at least one op other than none"]),
    (["search.space_options.ops=[]"], ["ops: needs at least one op"]),
    (["search.space_options.ops=7"], ["search.space_options.ops: expected str or list of str, got 7"]),
    (["search.space_options.ops=[1, 2]"], ["ops: expected str or list of str"]),
    (["search.space_options.channels=0"], ["search.space_options.channels: must be at least 1, got 0"]),
    (["search.space_options.cells=-1"], ["search.space_options.cells: must be at least 1, got -1"]),
    (["search.space_options.nodes=0"], ["search.space_options.nodes: must be at least 1"]),
    (["search.space_options.stem_multiplier=0"], ["stem_multiplier: must be at least 1"]),
    (["search.space_options.partial_channels=3"], ["partial_channels: 3 must divide channels 8", "divisor"]),
    (["search.space_options.partial_channels=0"], ["partial_channels: must be at least 1"]),
    (["search.space_options.weighting=hard"], ["weighting: 'hard' is not a choice; use one of softmax"]),
    (["search.space_options.tau=0"], ["search.space_options.tau: must be above 0"]),
    (["search.space_options.aux_skip=-1"], ["search.space_options.aux_skip: must be at least 0"]),
    ([*BLOCKS, "search.space_options.choices=fewshot"], ["search.space_options.choices: expected list of str"]),
    ([*BLOCKS, "search.space_options.choices=[mbconv_k3_e3, warp]"], ["choices: unknown op 'warp'"]),
    ([*BLOCKS, "search.space_options.choices=[skip_connect]"], ["choices: needs at least one op other than "
                                                                 "skip_connect"]),
    ([*BLOCKS, "search.space_options.choices=[none, mbconv_k3_e3]"], ["choices: 'none' cannot be a choice"]),
    ([*BLOCKS, "search.space_options.stages=[]"], ["stages: needs at least one stage"]),
    ([*BLOCKS, "search.space_options.stages=[[24, 2, 3]]"], ["stages: stage 0 is [24, 2, 3]", "stride 1 or 2"]),
    ([*BLOCKS, "search.space_options.stages=[[24, 2]]"], ["stages: stage 0 is [24, 2]"]),
    ([*BLOCKS, "search.space_options.stages=[24, 2, 2]"], ["stages: expected list of list of int"]),
    ([*BLOCKS, "search.space_options.stem_channels=0"], ["stem_channels: must be at least 1"]),
    (["search.sampler_options.w_momentum=2"], ["search.sampler_options.w_momentum: must lie in [0.0, 1.0]"]),
    (["search.sampler_options.grad_clip=0"], ["search.sampler_options.grad_clip: must be above 0"]),
    (["search.sampler_options.w_weight_decay=-1"], ["w_weight_decay: must be at least 0"]),
    (["search.sampler=darts", "search.sampler_options.order=third"], ["order: 'third' is not a choice; use one of "
                                                                       "first, second"]),
    ([*GDAS, "search.sampler_options.tau_min=20"], ["tau_min: 20 is above tau_max 10.0"]),
    ([*GDAS, "search.sampler_options.tau_max=0"], ["tau_max: must be above 0"]),
    (["model.options.hidden=0"], ["model.options.hidden: must be at least 1, got 0"]),
    (["model.options.layers=-1"], ["model.options.layers: must be at least 1"]),
    (["model.name=resnet12", "model.options.widths=[0, 2]"], ["model.options.widths:", "each at least 1"]),
    (["model.name=resnet12", "model.options.widths=64"], ["model.options.widths: expected list of int, got 64"]),
]


@pytest.mark.parametrize("overrides, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_option_values_exit_2_with_one_message(overrides, words, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["-q", "search", QUICK, *overrides, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fsnas: error: configs/quickstart.yaml: ") and "Traceback" not in err
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert not out.exists()


def test_an_op_list_is_a_space_of_those_ops():
    cfg = load_config(QUICK, ["search.space_options.ops=[sep_conv_3x3, skip_connect]"])
    net = DartsSupernet(1, **cfg.search.space_options)
    assert net.op_names == ("sep_conv_3x3", "skip_connect") and net.alpha_normal.shape[1] == 2
    assert {op for node in net.sample_path().normal.nodes for op, _ in node} <= set(net.op_names)


def test_the_library_refuses_the_same_values():
    with pytest.raises(OptionError, match="unknown op 'warp'"):
        DartsSupernet(1, ops=["warp"])
    with pytest.raises(OptionError, match="stages: stage 0"):
        BlockSupernet(1, stages=[[8, 0, 1]])
    with pytest.raises(OptionError, match="hidden: must be at least 1"):
        MODELS["conv4"](hidden=0)
    with pytest.raises(OptionError, match="tau_min"):
        STRATEGIES["gdas"](DartsSupernet(1, channels=4, cells=1, nodes=1, weighting="gumbel"), steps=1,
                           tau_max=1.0, tau_min=2.0)


@pytest.mark.parametrize("registry", [SPACES, STRATEGIES, MODELS, LEARNERS, LOSSES], ids=lambda r: r.kind)
def test_every_default_conforms_to_its_annotation_and_passes_its_checks(registry):
    """The type check understands every annotation of a registered factory (None: not judged), and each
    factory's declared checks accept its defaults."""
    for name, factory in registry.items():
        params = factory_params(factory, ("self", "class_counts"))
        defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
        assert {k: conforms(v, params[k].annotation) for k, v in defaults.items()} == dict.fromkeys(defaults, True), name
        getattr(factory, "check_options", lambda options: None)(defaults)
