"""nas: the application: configs, run folders, training loop, search, latency, export, tuning, CLI."""


def load_backbone(folder, device="cpu", check_hash: bool = True, format: str = "weights"):  # noqa: A002
    """The backbone of an ``fsnas export`` folder as an ``nn.Module`` in eval mode; ``format``: "weights" (plain
    PyTorch) or "pt2" (the torch.export program); see nas.export.load_backbone."""
    from .export import load_backbone as _load
    return _load(folder, device, check_hash, format=format)
