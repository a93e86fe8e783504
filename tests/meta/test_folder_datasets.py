"""miniImageNet, CIFAR-FS / FC100 and ImageFolder loaders, on tiny fake folders in the real layouts."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from meta.data import DatasetError, load_dataset
from meta.data import cifar as cifar_module

SHARED_SPLITS = Path("/work/shared/data/splits")


def _write_image(path: Path, rng: np.random.Generator, size: int = 12, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, format=fmt)


def _counts(ds, split: str) -> tuple[int, int]:
    s = ds.split(split)
    return s.num_classes, s.num_images


# ---------------------------------------------------------------- miniImageNet

MINI_SPLITS = {"train": ["n01", "n02", "n03", "n04"], "val": ["n05", "n06"], "test": ["n07", "n08"]}
MINI_PER_CLASS = 5


def _fake_mini(root: Path, per_class_folders: bool = False) -> None:
    rng = np.random.default_rng(0)
    for split, classes in MINI_SPLITS.items():
        lines = ["class_name,image_name"]
        for cls in classes:
            for i in range(MINI_PER_CLASS):
                name = f"{cls}_{i:04d}.JPEG"
                lines.append(f"{cls},{name}")
                sub = Path(cls) / name if per_class_folders else Path(name)
                _write_image(root / "mini-imagenet" / "images" / sub, rng, size=10 + i, fmt="JPEG")
        split_file = root / "splits" / "mini-imagenet" / f"mini_{split}.csv"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("per_class_folders", [False, True])
def test_mini_imagenet_layouts_and_cache(tmp_path, per_class_folders):
    root, cache = tmp_path / "data", tmp_path / "cache"
    _fake_mini(root, per_class_folders)
    ds = load_dataset("mini_imagenet", root, image_size=16, cache_dir=cache)
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (8 * MINI_PER_CLASS, 3, 16, 16)
    assert ds.image_shape == (3, 16, 16)
    for split, classes in MINI_SPLITS.items():
        assert _counts(ds, split) == (len(classes), len(classes) * MINI_PER_CLASS)
        assert [ds.class_names[c] for c in ds.splits[split]] == classes
    # every image carries the label of the class the CSV gives it
    train = ds.split("train")
    for row, cid in enumerate(train.class_ids.tolist()):
        assert set(ds.labels[train.image_index[row]].tolist()) == {cid}
    assert len(ds.mean) == 3 and all(0 < s for s in ds.std)
    assert len(list(cache.glob("*.pt"))) == 1

    again = load_dataset("mini_imagenet", root, image_size=16, cache_dir=cache)
    assert torch.equal(again.images, ds.images) and torch.equal(again.labels, ds.labels)
    assert again.splits == ds.splits and again.mean == ds.mean
    assert len(list(cache.glob("*.pt"))) == 1  # read back, not rebuilt under a new key
    load_dataset("mini_imagenet", root, image_size=20, cache_dir=cache)
    assert len(list(cache.glob("*.pt"))) == 2  # another size is another entry


def test_mini_imagenet_cache_is_read_not_rebuilt(tmp_path, monkeypatch):
    root, cache = tmp_path / "data", tmp_path / "cache"
    _fake_mini(root)
    first = load_dataset("mini_imagenet", root, image_size=8, cache_dir=cache)
    from meta.data import mini_imagenet

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(mini_imagenet, "decode_images", no_decoding)
    assert torch.equal(load_dataset("mini_imagenet", root, image_size=8, cache_dir=cache).images, first.images)


def test_mini_imagenet_splits_come_from_the_files_not_the_cache(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    _fake_mini(root)
    alt = tmp_path / "alt-splits"
    alt.mkdir()
    for split in ("train", "val", "test"):  # Ravi's header and plain names, in a split_dir of its own
        src = (root / "splits" / "mini-imagenet" / f"mini_{split}.csv").read_text().splitlines()[1:]
        rows = [",".join(reversed(line.split(","))) for line in src]
        (alt / f"{split}.csv").write_text("\n".join(["filename,label"] + rows) + "\n")
    ds = load_dataset("mini_imagenet", root, image_size=8, cache_dir=cache, split_dir=alt)
    assert _counts(ds, "val") == (2, 2 * MINI_PER_CLASS)


def test_mini_imagenet_missing_images_and_split_files(tmp_path):
    root = tmp_path / "data"
    _fake_mini(root)
    (root / "mini-imagenet" / "images" / "n05_0003.JPEG").unlink()
    (root / "mini-imagenet" / "images" / "n08_0000.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"2 of 40 images .* missing .*first: n05_0003\.JPEG \(class n05\)"):
        load_dataset("mini_imagenet", root, image_size=8)
    (root / "splits" / "mini-imagenet" / "mini_test.csv").unlink()
    with pytest.raises(DatasetError, match=r"mini_test\.csv.*split_dir"):
        load_dataset("mini_imagenet", root, image_size=8)
    with pytest.raises(DatasetError, match=r"mini-imagenet/images"):
        load_dataset("mini_imagenet", tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="data root"):
        load_dataset("mini_imagenet", None)


def test_mini_imagenet_bad_csv_header(tmp_path):
    root = tmp_path / "data"
    _fake_mini(root)
    (root / "splits" / "mini-imagenet" / "mini_val.csv").write_text("a,b\nx,y\n")
    with pytest.raises(DatasetError, match="class_name,image_name"):
        load_dataset("mini_imagenet", root, image_size=8)


# ---------------------------------------------------------------- CIFAR-FS / FC100

FINE = ["apple", "pear", "dolphin", "seal", "rose", "tulip", "bus", "tank"]
COARSE = ["fruit", "aquatic_mammals", "flowers", "vehicles"]
COARSE_OF = [0, 0, 1, 1, 2, 2, 3, 3]
CIFAR_PER_PART = {"train": 5, "test": 1}  # per class: pooled, 6 images a class


def _legacy_numpy_pickle(obj) -> bytes:
    """A pickle naming ``numpy.core.multiarray`` (as the real, Python 2 era CIFAR files do)."""
    return pickle.dumps(obj, protocol=3).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _fake_cifar(root: Path) -> dict[str, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for part, n in CIFAR_PER_PART.items():
        fine = np.repeat(np.arange(len(FINE)), n)
        data = rng.integers(0, 256, (fine.size, 3072), dtype=np.uint8)
        blob = {"data": data, "fine_labels": fine.tolist(), "coarse_labels": [COARSE_OF[f] for f in fine],
                "filenames": [f"img{i}.png" for i in range(fine.size)], "batch_label": part}
        (folder / part).write_bytes(_legacy_numpy_pickle(blob) if part == "train" else pickle.dumps(blob, 4))
        written[part] = data
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": FINE, "coarse_label_names": COARSE}, 2))
    splits = {"cifar-fs": {"train": [["fruit", "apple"], ["aquatic_mammals", "dolphin"], ["flowers", "rose"],
                                     ["vehicles", "bus"]],
                           "val": [["fruit", "pear"], ["aquatic_mammals", "seal"]],
                           "test": [["flowers", "tulip"], ["vehicles", "tank"]]},
              "fc100": {"train": ["fruit", "vehicles"], "val": ["flowers"], "test": ["aquatic_mammals"]}}
    for name, files in splits.items():
        (root / "splits" / name).mkdir(parents=True)
        for split, items in files.items():
            (root / "splits" / name / f"{split}.json").write_text(json.dumps(items))
    return written


def test_cifar_fs_counts_pixels_and_cache(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    written = _fake_cifar(root)
    ds = load_dataset("cifar_fs", root, cache_dir=cache)
    assert ds.name == "cifar_fs"
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (48, 3, 32, 32)
    assert ds.class_names == FINE
    # train then test, each row 1024 red, 1024 green, 1024 blue values, row-major
    assert torch.equal(ds.images[0], torch.from_numpy(written["train"][0].reshape(3, 32, 32)))
    assert torch.equal(ds.images[40], torch.from_numpy(written["test"][0].reshape(3, 32, 32)))
    assert {k: _counts(ds, k) for k in ds.splits} == {"train": (4, 24), "val": (2, 12), "test": (2, 12)}
    assert [ds.class_names[c] for c in ds.splits["val"]] == ["pear", "seal"]
    val = ds.split("val")
    assert (ds.labels[val.image_index[0]] == FINE.index("pear")).all()

    again = load_dataset("cifar_fs", root, cache_dir=cache)
    assert torch.equal(again.images, ds.images) and again.splits == ds.splits
    fc = load_dataset("fc100", root, cache_dir=cache)  # same images: the same cache entry
    assert len(list(cache.glob("*.pt"))) == 1
    assert fc.name == "fc100" and torch.equal(fc.images, ds.images)


def test_fc100_superclasses_expand_to_their_classes(tmp_path):
    root = tmp_path / "data"
    _fake_cifar(root)
    ds = load_dataset("fc100", root, image_size=16)
    assert ds.images.shape == (48, 3, 16, 16) and ds.images.dtype == torch.uint8
    named = {k: [ds.class_names[c] for c in v] for k, v in ds.splits.items()}
    assert named == {"train": ["apple", "pear", "bus", "tank"], "val": ["rose", "tulip"],
                     "test": ["dolphin", "seal"]}
    assert _counts(ds, "test") == (2, 12)


def test_cifar_errors(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match=r"CIFAR-100 not found .*cifar-100-python.*download"):
        load_dataset("cifar_fs", root)
    _fake_cifar(root)
    (root / "splits" / "cifar-fs" / "val.json").write_text(json.dumps([["fruit", "pear"], ["x", "unicorn"]]))
    with pytest.raises(DatasetError, match=r"val\.json names 1 classes not found .*'unicorn'"):
        load_dataset("cifar_fs", root)
    (root / "splits" / "fc100" / "test.json").write_text(json.dumps(["aquatic_mammals", "dragons"]))
    with pytest.raises(DatasetError, match=r"test\.json names 1 classes not found .*superclasses: 'dragons'"):
        load_dataset("fc100", root)
    (root / "splits" / "fc100" / "train.json").unlink()
    with pytest.raises(DatasetError, match=r"fc100 split file not found .*train\.json"):
        load_dataset("fc100", root)
    with pytest.raises(DatasetError, match=r"split file not found .*nowhere"):
        load_dataset("cifar_fs", root, split_dir=tmp_path / "nowhere")


def test_cifar_download_fetches_once(tmp_path, monkeypatch):
    root = tmp_path / "data"
    calls = []

    def fake_download(url, download_root, filename=None, md5=None):
        calls.append((url, filename, md5))
        _fake_cifar(Path(download_root))

    monkeypatch.setattr(cifar_module, "download_and_extract_archive", fake_download)
    ds = load_dataset("cifar_fs", root, download=True)
    assert len(calls) == 1 and calls[0][1] == "cifar-100-python.tar.gz" and calls[0][2]
    assert ds.images.shape[0] == 48
    load_dataset("fc100", root, download=True)  # already there: no second download
    assert len(calls) == 1


class _Payload:
    """Unpickling this would create ``self.marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("make, refused", [
    (lambda marker: pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "x": _Payload(marker)}, 4), r"\w+\.open"),
    (lambda marker: pickle.dumps({"fine_label_names": [], "call": __import__("os").system}, 4), r"posix\.system"),
    (lambda marker: pickle.dumps({"obj": _Payload}, 4), r"\S*test_folder_datasets\._Payload"),
], ids=["reduce-open", "os-system", "custom-class"])
def test_restricted_unpickler_refuses_foreign_globals(tmp_path, make, refused):
    root = tmp_path / "data"
    _fake_cifar(root)
    marker = tmp_path / "pwned"
    (root / "cifar-100-python" / "meta").write_bytes(make(marker))
    with pytest.raises(DatasetError, match=rf"meta: refusing to unpickle {refused}:"):
        load_dataset("cifar_fs", root)
    assert not marker.exists()


def test_restricted_unpickler_reads_arrays_only(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(_legacy_numpy_pickle({"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "n": [1, 2]}))
    blob = cifar_module.load_pickle(path)
    assert blob["data"].dtype == np.uint8 and blob["data"].tolist() == [[0, 1, 2], [3, 4, 5]]
    path.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a readable CIFAR-100"):
        cifar_module.load_pickle(path)


@pytest.mark.skipif(not (SHARED_SPLITS / "fc100" / "train.json").exists(), reason="shared split files absent")
def test_real_cifar_split_files_parse(tmp_path):
    """The published CIFAR-FS and FC100 split files, over a fake CIFAR-100 with their 100 class names."""
    pairs = [p for s in ("train", "val", "test")
             for p in json.loads((SHARED_SPLITS / "cifar-fs" / f"{s}.json").read_text())]
    coarse = sorted({c for c, _ in pairs})
    fine = [f for _, f in pairs]
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    labels = list(range(len(fine)))
    blob = {"data": np.zeros((len(fine), 3072), np.uint8), "fine_labels": labels,
            "coarse_labels": [coarse.index(c) for c, _ in pairs]}
    for part in ("train", "test"):
        (folder / part).write_bytes(pickle.dumps(blob, 4))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": fine, "coarse_label_names": coarse}, 4))
    fs = load_dataset("cifar_fs", tmp_path, split_dir=SHARED_SPLITS / "cifar-fs")
    fc = load_dataset("fc100", tmp_path, split_dir=SHARED_SPLITS / "fc100")
    assert [len(fs.splits[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert [len(fc.splits[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    assert not set(fc.splits["train"]) & set(fc.splits["test"])


# ---------------------------------------------------------------- ImageFolder

FOLDER_CLASSES = {f"class_{i}": 5 + i % 3 for i in range(7)}  # 5-7 images a class


def _fake_folder(root: Path, split_dir: Path, val: bool = True) -> None:
    rng = np.random.default_rng(2)
    exts = ["png", "JPG", "jpeg", "bmp", "webp", "PNG", "png"]
    formats = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP"}
    for i, (cls, n) in enumerate(FOLDER_CLASSES.items()):
        for j in range(n):
            ext = exts[(i + j) % len(exts)]
            _write_image(root / "mine" / cls / f"{j}.{ext}", rng, size=9, fmt=formats[ext.lower()])
    (root / "mine" / "class_0" / "notes.txt").write_text("not an image")
    (root / "mine" / "empty_class").mkdir()
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "train.txt").write_text("class_0\nclass_1\nclass_2\n\nclass_3\n")
    (split_dir / "test.txt").write_text("class_5\nclass_6\n")
    if val:
        (split_dir / "val.txt").write_text("class_4\n")


def test_image_folder_counts_channels_and_cache(tmp_path):
    root, splits, cache = tmp_path / "data", tmp_path / "splits", tmp_path / "cache"
    _fake_folder(root, splits)
    ds = load_dataset("image_folder", root, image_size=12, split_dir=splits, cache_dir=cache, folder="mine")
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (sum(FOLDER_CLASSES.values()), 3, 12, 12)
    assert ds.class_names == sorted(FOLDER_CLASSES)  # the empty folder is no class
    expect = {"train": ["class_0", "class_1", "class_2", "class_3"], "val": ["class_4"],
              "test": ["class_5", "class_6"]}
    for split, names in expect.items():
        assert [ds.class_names[c] for c in ds.splits[split]] == names
        assert _counts(ds, split) == (len(names), sum(FOLDER_CLASSES[n] for n in names))
    test = ds.split("test")
    assert (ds.labels[test.image_index[1][: test.image_counts[1]]] == ds.class_names.index("class_6")).all()

    again = load_dataset("image_folder", root, image_size=12, split_dir=splits, cache_dir=cache, folder="mine")
    assert torch.equal(again.images, ds.images) and len(list(cache.glob("*.pt"))) == 1
    gray = load_dataset("image_folder", root / "mine", image_size=12, split_dir=splits, cache_dir=cache,
                        channels=1)
    assert gray.images.shape[1] == 1 and len(gray.mean) == 1 and len(list(cache.glob("*.pt"))) == 2


def test_image_folder_val_optional_and_errors(tmp_path):
    root, splits = tmp_path / "data", tmp_path / "splits"
    _fake_folder(root, splits, val=False)
    ds = load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="mine")
    assert sorted(ds.splits) == ["test", "train"]
    with pytest.raises(DatasetError, match="needs data.split_dir"):
        load_dataset("image_folder", root, image_size=8, folder="mine")
    with pytest.raises(DatasetError, match="channels must be 1"):
        load_dataset("image_folder", root, split_dir=splits, folder="mine", channels=4)
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("image_folder", root, split_dir=splits, folder="typo")
    with pytest.raises(DatasetError, match="takes no option"):
        load_dataset("image_folder", root, split_dir=splits, colour=True)
    (splits / "test.txt").write_text("class_5\nclass_9\nempty_class\n")
    with pytest.raises(DatasetError, match=r"test\.txt names 2 classes not found .*'class_9', 'empty_class'"):
        load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="mine")
    (splits / "train.txt").unlink()
    with pytest.raises(DatasetError, match=r"split file not found .*train\.txt"):
        load_dataset("image_folder", root, image_size=8, split_dir=splits, folder="mine")


def test_a_constant_colour_channel_is_normalised_by_one_not_divided_by_zero():
    from meta.data.base import FewShotDataset, pixel_stats
    from meta.episodes import EpisodeSampler
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    images[:, 2] = 0  # a blank blue channel (e.g. images of two colours)
    mean, std = pixel_stats(images)
    assert std[2] == 1.0 and 0.2 < std[0] < 0.4
    old_cache = FewShotDataset("x", images, torch.arange(40) // 4, [str(c) for c in range(10)],
                               {"train": list(range(10))}, mean, (std[0], std[1], 0.0))
    assert old_cache.std[2] == 1.0
    ep = EpisodeSampler(old_cache, "train", 5, 1, 2, seed=0).episode(0)
    assert torch.isfinite(ep.support_x).all() and torch.isfinite(ep.query_x).all()
