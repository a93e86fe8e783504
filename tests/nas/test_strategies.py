"""Search strategies declare what they are, and the loop, pipeline and config checks ask them: a new
single-path strategy is one class and one registry line."""

import json

import pytest
import torch
import yaml

from nas import cli
from nas.checks.options import factory_params
from nas.search.objective import episode_loss
from nas.search.strategies import STRATEGIES, SearchStrategy
from search_spaces import load_genotype

from .test_search import SEARCH


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_declared_traits_agree_with_the_constructor(name):
    cls = STRATEGIES[name]
    params = factory_params(cls, ("self",))
    assert ("seed" in params) == cls.takes_seed
    assert ("latency" in params) == cls.takes_latency
    assert cls.differentiable or cls.chooses_by_evolution  # one way or the other it chooses an architecture


class CyclicPaths(SearchStrategy):
    """A single-path strategy that is not spos: it trains three seeded paths in turn."""

    chooses_by_evolution = True
    takes_seed = True

    def __init__(self, supernet, *, steps: int, seed: int = 0, w_lr: float = 0.05) -> None:
        self.net, self.t = supernet, 0
        gen = torch.Generator().manual_seed(seed)
        self.paths = [supernet.sample_path(gen) for _ in range(3)]
        self.opt = torch.optim.SGD(supernet.weight_parameters(), lr=w_lr)

    def step(self, train_eps, val_eps):
        path = self.paths[self.t % len(self.paths)]
        self.t += 1
        self.opt.zero_grad(set_to_none=True)
        loss, acc = episode_loss(lambda x: self.net(x, path=path), train_eps[0])  # the step's meta-batch: one
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "accuracy": acc}

    def state_dict(self):
        return {"opt": self.opt.state_dict(), "t": self.t}

    def load_state_dict(self, state):
        self.opt.load_state_dict(state["opt"])
        self.t = int(state["t"])


@pytest.fixture
def with_cyclic(monkeypatch):
    monkeypatch.setattr(STRATEGIES, "_items", dict(STRATEGIES._items))
    STRATEGIES.register("cyclic")(CyclicPaths)  # the one registry line


def test_a_new_single_path_strategy_needs_one_class_and_one_registry_line(with_cyclic, tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**SEARCH, "search": {**SEARCH["search"], "sampler": "cyclic",
                                                           "sampler_options": {"w_lr": 0.1}}}))
    out = tmp_path / "cyclic"
    assert cli.main(["-q", "search", str(config), "--out", str(out)]) == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["phase"] == "search"] == [4, 8, 12]
    assert not any("alpha_entropy" in r for r in records)  # not differentiable: no alpha to log
    assert [r["generation"] for r in records if r["phase"] == "evolution"] == [1, 2]  # chosen by evolution
    genotype = load_genotype(out / "genotype.yaml")
    assert json.loads((out / "summary.json").read_text())["genotype"] == genotype.to_dict()
    # its options are checked against its constructor, and it may evolve in a trained supernet like spos
    assert cli.main(["-q", "search", str(config), "search.sampler_options.lr=1"]) == 2
    assert "search.sampler_options.lr: unknown option of sampler cyclic; its options are w_lr" in capsys.readouterr().err
    assert cli.main(["-q", "search", str(config), "search.sampler=darts", "search.sampler_options={}",
                     f"search.supernet={out}"]) == 2
    assert "only the cyclic or progressive or sandwich or spos sampler evolves in a trained supernet" in capsys.readouterr().err


def test_a_strategy_that_does_not_average_its_gradients_is_refused_on_workers(with_cyclic, tmp_path):
    from nas.checks import load_config
    from nas.errors import ConfigError
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**SEARCH, "search": {**SEARCH["search"], "sampler": "cyclic",
                                                           "sampler_options": {}}, "distributed": {"workers": 2}}))
    with pytest.raises(ConfigError, match="the cyclic sampler does not average its gradients over workers"):
        load_config(config)
    assert all(STRATEGIES[name].data_parallel for name in ("darts", "gdas", "spos", "sandwich", "progressive"))


class OnePathNet(torch.nn.Module):
    """Every path is the same linear features: a sandwich step's paths are recorded, and a student's
    predictions equal the teacher's."""

    def __init__(self, in_features: int):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(in_features, 6)
        self.ran = []

    def forward(self, x, path=None):
        self.ran.append(path)
        return self.lin(x.flatten(1))

    def weight_parameters(self):
        return list(self.parameters())

    def sample_path(self, gen):
        return f"drawn{int(torch.randint(100, (1,), generator=gen))}"

    def extreme_path(self, largest, gen=None):
        return "largest" if largest else "smallest"


def sandwich_gradient(distill: bool) -> tuple[list, torch.Tensor]:
    from meta.episodes import EpisodeSampler
    from meta.data import load_dataset
    ds = load_dataset("synthetic", train_classes=10, val_classes=5, test_classes=5, images_per_class=6, image_size=8)
    ep = EpisodeSampler(ds, "train", 5, 1, 2, seed=0).episode(0)
    net = OnePathNet(ep.support_x[0].numel())
    strategy = STRATEGIES["sandwich"](net, steps=4, random_paths=2, distill=distill, seed=0, grad_clip=1e9)
    grads = {}
    strategy.w_opt.step = lambda: grads.setdefault("w", net.lin.weight.grad.clone())
    strategy.step(ep)
    return net.ran, grads["w"]


def test_a_sandwich_step_trains_the_largest_the_smallest_and_drawn_paths_distilled_from_the_largest():
    ran, distilled = sandwich_gradient(distill=True)
    assert ran[:2] == ["largest", "smallest"] and len(ran) == 4 and all(p.startswith("drawn") for p in ran[2:])
    _, labelled = sandwich_gradient(distill=False)
    # identical paths: a student matching the teacher adds no gradient; learning the labels adds the same again
    torch.testing.assert_close(labelled, 4 * distilled)
    assert distilled.abs().sum() > 0


def test_progressive_shrinking_opens_the_dimensions_phase_by_phase_and_resumes_its_phase():
    from meta.data import load_dataset
    from meta.episodes import EpisodeSampler
    from search_spaces import create_supernet
    ds = load_dataset("synthetic", train_classes=10, val_classes=5, test_classes=5, images_per_class=6, image_size=16)
    ep = EpisodeSampler(ds, "train", 5, 1, 2, seed=0).episode(0)
    net = create_supernet("elastic", 1, stages=[2, 3], widths=[4, 8], depths=[1, 2], kernels=[3, 5], convs=[1, 2])
    ran = []
    forward = net.forward
    net.forward = lambda x, path=None: (ran.append(path), forward(x, path=path))[1]
    phases = [[], ["kernels", "widths"], ["stages", "depths", "convs", "blocks", "downsampling", "heads"]]
    strategy = STRATEGIES["progressive"](net, steps=8, phases=phases, phase_share=[1, 1, 2], seed=0)
    assert strategy.ends == [2, 4, 8]
    seen = []
    for step in range(8):
        ran.clear()
        metrics = strategy.step(ep)
        seen.append((metrics["shrink_phase"], list(ran)))
    anchor = net.sample_path(open=())
    assert [p for p, _ in seen] == [0, 0, 1, 1, 2, 2, 2, 2]
    assert all(paths == [anchor] for _, paths in seen[:2])  # the first phase: the anchor network alone, once
    for _, paths in seen[2:4]:  # only kernels and widths move
        assert 2 <= len(paths) == len(set(paths)) <= 4
        assert all(len(p.stages) == 3 and p.head == anchor.head and all(
            (s.block, s.depth, s.down) == (a.block, a.depth, a.down) for s, a in zip(p.stages, anchor.stages))
            for p in paths)
        assert {s.kernel for s in paths[1].stages} == {3} and {s.width for s in paths[1].stages} == {4}
    assert any(len(p.stages) == 2 for _, paths in seen[4:] for p in paths)  # now every dimension moves
    # a resumed strategy is in the phase it stopped in
    again = STRATEGIES["progressive"](net, steps=8, phases=phases, phase_share=[1, 1, 2], seed=0)
    half = STRATEGIES["progressive"](net, steps=8, phases=phases, phase_share=[1, 1, 2], seed=0)
    for _ in range(3):
        half.step(ep)
    again.load_state_dict(half.state_dict())
    assert again.phase() == 1 and again.t == 3


@pytest.mark.parametrize("phases, message", [
    ([["kernels"], ["wings"]], "search.sampler_options.phases: 'wings' is not a dimension of this space"),
    ([[], ["kernels", "widths"]], "search.sampler_options.phases: stages, depths, blocks, convs, downsampling, heads "
                                  "never opened"),
    ([["kernels"], ["kernels"]], "search.sampler_options.phases: a dimension is opened twice")])
def test_progressive_phases_that_do_not_fit_the_space_are_refused(tmp_path, capsys, phases, message):
    from .test_elastic_search import ELASTIC
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({**ELASTIC, "search": {**ELASTIC["search"], "sampler": "progressive",
                                                            "sampler_options": {"phases": phases}}}))
    assert cli.main(["-q", "search", str(config), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
