"""Shared fixtures.  Real data comes from FSNAS_DATA_ROOT or ../shared/data beside the repository;
tests that need it are skipped where neither exists (a fresh offline machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from meta.data import FewShotDataset

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    for candidate in (os.environ.get("FSNAS_DATA_ROOT"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "omniglot-py").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Dataset caches of the test session go to a temporary folder, never to the user's ~/.cache."""
    old = os.environ.get("FSNAS_CACHE_DIR")
    os.environ["FSNAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("fsnas-cache"))
    yield
    if old is None:
        os.environ.pop("FSNAS_CACHE_DIR", None)
    else:
        os.environ["FSNAS_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def omniglot_root() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("real Omniglot not found (set FSNAS_DATA_ROOT or place ../shared/data)")
    return root


@pytest.fixture(scope="session")
def omniglot(omniglot_root) -> FewShotDataset:
    from meta.data import load_dataset
    from meta.data.cache import default_cache_dir
    return load_dataset("omniglot", omniglot_root, cache_dir=default_cache_dir())


def toy_dataset(classes: int = 12, per_class: int = 10, size: int = 8, channels: int = 1,
                rotations: int = 1) -> FewShotDataset:
    """A tiny dataset whose pixel values encode (class, image) so tests can check what was sampled."""
    n = classes * per_class
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.zeros(n, channels, size, size, dtype=torch.uint8)
    images[:, :, 0, 0] = labels[:, None].to(torch.uint8)  # class id
    images[:, :, 0, 1] = torch.arange(n)[:, None].remainder(per_class).to(torch.uint8)  # image id
    images[:, :, 0, size - 1] = 200  # a marker to see rotations by
    third = classes // 3
    return FewShotDataset(name="toy", images=images, labels=labels, class_names=[f"c{i}" for i in range(classes)],
                          splits={"train": list(range(third)), "val": list(range(third, 2 * third)),
                                  "test": list(range(2 * third, classes))},
                          mean=(0.0,) * channels, std=(1.0,) * channels, train_rotations=rotations)


def kill_after_first_checkpoint(fsnas_args: list[str], checkpoint: Path, timeout: float = 120) -> None:
    """Run ``fsnas ARGS`` in a subprocess and SIGKILL it as soon as ``checkpoint`` appears."""
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "-q", *fsnas_args],
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not checkpoint.exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def input_shapes_run(net: torch.nn.Module, modules: list, image_shape: tuple) -> list[tuple]:
    """The [C, H, W] of each input ``modules`` receive, in the order they run, on one blank image."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape[1:]))) for m in modules]
    try:
        net.eval()(torch.zeros(1, *image_shape))
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """No test leaks a torch thread count to the next: a run compared with a subprocess's (the SIGKILL resume
    tests) must use the threads the subprocess gets, or their floating-point sums differ."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
