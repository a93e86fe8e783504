import pytest
import torch

from meta.batchnorm import use_bn_mode
from meta.episodes import EpisodeSampler
from meta.evaluation import evaluate
from meta.learners import ProtoNet, create_learner, prototype_logits, prototypes
from search_spaces import create_model


def test_prototypes_are_class_means():
    feats = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [5.0, 5.0], [7.0, 5.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    protos = prototypes(feats, labels, 2)
    assert torch.equal(protos, torch.tensor([[1.0, 1.0 / 3], [6.0, 5.0]]))


def test_logits_are_negative_squared_distances():
    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    p = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert torch.allclose(prototype_logits(q, p), torch.tensor([[0.0, -9.0], [-25.0, -16.0]]))
    with pytest.raises(ValueError, match="unknown distance"):
        prototype_logits(q, p, "manhattan")


def test_transductive_bn_leaves_the_model_unchanged():
    model = create_model("conv4", in_channels=1, hidden=8)
    model.train()
    model(torch.randn(16, 1, 28, 28))  # move the running statistics away from their init
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with use_bn_mode(model, "transductive"):
        assert model.training
        model(torch.randn(16, 1, 28, 28) * 3 + 1)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training  # mode restored


def test_learner_state_round_trip():
    torch.manual_seed(0)
    a = create_learner("protonet", create_model("conv4", in_channels=1, hidden=8), lr=0.01, lr_step=5)
    b = create_learner("protonet", create_model("conv4", in_channels=1, hidden=8), lr=0.01, lr_step=5)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_protonet_learns_omniglot(omniglot):
    """A short real run: 80 steps of 20-way training lifts 5-way 1-shot test accuracy far above chance (20%)."""
    torch.manual_seed(0)
    learner = ProtoNet(create_model("conv4", in_channels=1), lr=1e-3)
    train = EpisodeSampler(omniglot, "train", n_way=20, k_shot=1, n_query=5, seed=0)
    test = EpisodeSampler(omniglot, "test", n_way=5, k_shot=1, n_query=15, seed=1)
    untrained = evaluate(learner, test, episodes=50, progress=False).accuracy
    for step in range(80):
        metrics = learner.meta_train_step([train.episode(step)])
    assert metrics["loss"] < 2.0  # ln(20) = 3.0 at chance
    trained = evaluate(learner, test, episodes=100, progress=False)
    assert trained.accuracy > 0.7, trained
    assert trained.accuracy > untrained + 0.05
