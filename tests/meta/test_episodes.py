import pytest
import torch

from meta.data import DatasetError
from meta.episodes import EpisodeSampler

from ..conftest import toy_dataset


def raw(x: torch.Tensor) -> torch.Tensor:
    """Undo the sampler's scaling to [0, 1] (the toy dataset has mean 0, std 1)."""
    return (x * 255).round().long()


def test_shapes_and_labels():
    ds = toy_dataset(classes=30, per_class=10)
    s = EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=3, seed=0)
    ep = s.episode(0)
    assert ep.support_x.shape == (10, 1, 8, 8) and ep.query_x.shape == (15, 1, 8, 8)
    assert ep.support_x.dtype == torch.float32
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_y.tolist() == sorted([0, 1, 2, 3, 4] * 3)
    assert ep.n_way == 5


def test_images_belong_to_their_labels_and_are_distinct():
    ds = toy_dataset(classes=30, per_class=10)
    s = EpisodeSampler(ds, "test", n_way=4, k_shot=3, n_query=5, seed=3)
    split = ds.split("test")
    for i in range(20):
        ep = s.episode(i)
        cls_support = raw(ep.support_x[:, 0, 0, 0])
        cls_query = raw(ep.query_x[:, 0, 0, 0])
        expected = split.class_ids[ep.classes]
        assert torch.equal(cls_support, expected[ep.support_y])
        assert torch.equal(cls_query, expected[ep.query_y])
        # no image appears twice within a class (support and query are disjoint)
        for c in range(4):
            ids = raw(torch.cat([ep.support_x[ep.support_y == c, 0, 0, 1], ep.query_x[ep.query_y == c, 0, 0, 1]]))
            assert ids.unique().numel() == ids.numel() == 8


def test_seeded_determinism():
    ds = toy_dataset(classes=30)
    a = EpisodeSampler(ds, "train", 5, 1, 4, seed=11)
    b = EpisodeSampler(ds, "train", 5, 1, 4, seed=11)
    c = EpisodeSampler(ds, "train", 5, 1, 4, seed=12)
    # episode i depends only on (seed, i): the order of requests does not matter
    later_first = [b.episode(i) for i in (7, 3, 0)]
    for i, eb in zip((7, 3, 0), later_first):
        ea = a.episode(i)
        assert torch.equal(ea.support_x, eb.support_x) and torch.equal(ea.classes, eb.classes)
    assert any(not torch.equal(a.episode(i).classes, c.episode(i).classes) for i in range(5))
    assert not torch.equal(a.episode(0).query_x, a.episode(1).query_x)


def test_per_class_shots():
    ds = toy_dataset(classes=30)
    s = EpisodeSampler(ds, "train", n_way=3, k_shot=[1, 4, 2], n_query=2, seed=0)
    ep = s.episode(5)
    assert torch.bincount(ep.support_y).tolist() == [1, 4, 2]
    assert ep.query_y.tolist() == [0, 0, 1, 1, 2, 2]


def test_shot_profiles_give_imbalanced_supports():
    ds = toy_dataset(classes=30)
    counts = {}
    for profile in ("balanced", "linear", "step", "random"):
        s = EpisodeSampler(ds, "train", n_way=5, k_shot=5, n_query=2, seed=0, profile=profile, min_shot=1)
        eps = [s.episode(i) for i in range(20)]
        counts[profile] = [torch.bincount(ep.support_y, minlength=5).tolist() for ep in eps]
        for ep in eps:
            assert ep.query_y.tolist() == [c for c in range(5) for _ in range(2)]  # queries stay balanced
            assert len(ep.support_x) == len(ep.support_y)
    assert all(c == [5] * 5 for c in counts["balanced"])
    assert all(c == [5, 4, 3, 2, 1] for c in counts["linear"])
    assert all(c == [5, 5, 5, 1, 1] for c in counts["step"])
    drawn = [k for c in counts["random"] for k in c]
    assert min(drawn) == 1 and max(drawn) == 5 and len({tuple(c) for c in counts["random"]}) > 10
    again = EpisodeSampler(ds, "train", n_way=5, k_shot=5, n_query=2, seed=0, profile="random")
    assert torch.equal(again.episode(7).support_y, s.episode(7).support_y)  # a function of (seed, index)
    with pytest.raises(DatasetError, match="min_shot must be between 1 and k_shot"):
        EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=2, profile="linear", min_shot=3)
    with pytest.raises(KeyError, match="unknown shot profile 'zipf'"):
        EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=2, profile="zipf")


def test_rotated_classes():
    ds = toy_dataset(classes=30, rotations=4)
    split = ds.split("train")
    assert split.num_classes == 40
    s = EpisodeSampler(ds, "train", n_way=40, k_shot=1, n_query=1, seed=0)
    ep = s.episode(0)
    # each rotation moves the marker at (0, 7) to a different corner
    corners = {(0, 7): 0, (0, 0): 1, (7, 0): 2, (7, 7): 3}
    for label, cls in enumerate(ep.classes.tolist()):
        img = raw(ep.support_x[label, 0])
        pos = (img == 200).nonzero()[0].tolist()
        assert corners[tuple(pos)] == cls // 10
    assert ds.split("test").rotations == 1  # only meta-training classes are multiplied


def test_impossible_episodes_are_refused():
    ds = toy_dataset(classes=30, per_class=10)
    with pytest.raises(DatasetError, match="larger than the 10 classes"):
        EpisodeSampler(ds, "train", n_way=11, k_shot=1, n_query=1)
    with pytest.raises(DatasetError, match="k_shot \\+ n_query = 11"):
        EpisodeSampler(ds, "train", n_way=5, k_shot=1, n_query=10)
    with pytest.raises(DatasetError, match="no split 'bogus'"):
        EpisodeSampler(ds, "bogus", n_way=5, k_shot=1, n_query=1)


def test_iteration_needs_a_length():
    ds = toy_dataset(classes=30)
    s = EpisodeSampler(ds, "train", 5, 1, 1, seed=0, length=3)
    assert len(list(s)) == 3
    with pytest.raises(TypeError):
        len(EpisodeSampler(ds, "train", 5, 1, 1))


def per_class_episode(s: EpisodeSampler, index: int):
    """The sampler's first implementation, one class at a time: the vectorised one must give the same episode."""
    g = s.generator(index)
    classes = torch.randperm(s.split.num_classes, generator=g)[: s.n_way]
    support, query = [], []
    for c, shots in zip(classes.tolist(), s.shots):
        row, quarter_turns = s.split.base_class(c)
        n = int(s.split.image_counts[row])
        x = s.images[s.split.image_index[row, torch.randperm(n, generator=g)[: shots + s.n_query]]]
        x = torch.rot90(x, quarter_turns, dims=(2, 3)) if quarter_turns else x
        support.append(x[:shots])
        query.append(x[shots:])
    return torch.cat(support), torch.cat(query), classes


@pytest.mark.parametrize("shots", [2, [1, 3, 2, 1, 2]])
def test_episodes_equal_the_per_class_construction_with_rotations(shots):
    ds = toy_dataset(classes=30, rotations=4)
    s = EpisodeSampler(ds, "train", n_way=5, k_shot=shots, n_query=3, seed=3)
    for i in range(30):
        ep = s.episode(i)
        support, query, classes = per_class_episode(s, i)
        assert torch.equal(raw(ep.support_x), support.long()) and torch.equal(raw(ep.query_x), query.long())
        assert torch.equal(ep.classes, classes)
    assert ds.images[:, 0, 0, 7].eq(200).all()  # the dataset's own images never rotated in place


def test_a_sampler_on_a_device_makes_its_episodes_there_from_one_copy():
    ds = toy_dataset(classes=30, rotations=4)
    host = EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=3, seed=3)
    meta = torch.device("meta")  # a device other than the images' one, without a GPU
    with pytest.raises(NotImplementedError):  # gathering on the meta device has no data: it gets that far
        EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=3, seed=3, device=meta).episode(0)
    assert ds.images_on(meta) is ds.images_on(meta) and ds.images_on(meta).device == meta  # copied once
    same = EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=3, seed=3, device="cpu")
    assert same.images is ds.images
    for f in ("support_x", "support_y", "query_x", "query_y", "classes"):
        assert torch.equal(getattr(same.episode(4), f), getattr(host.episode(4), f))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_episodes_made_on_the_gpu_equal_the_host_ones():
    ds = toy_dataset(classes=30, rotations=4)
    host = EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=3, seed=3)
    gpu = EpisodeSampler(ds, "train", n_way=5, k_shot=2, n_query=3, seed=3, device="cuda")
    for i in range(5):
        a, b = host.episode(i), gpu.episode(i)
        assert b.support_x.is_cuda and all(torch.equal(getattr(a, f), getattr(b, f).cpu()) for f in (
            "support_x", "support_y", "query_x", "query_y", "classes"))
