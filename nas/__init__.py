"""nas: the application: configs, run folders, training loop, search, latency, export, tuning, CLI."""


def load_backbone(folder, device="cpu", check_hash: bool = True):
    """The backbone of an ``fsnas export`` folder as a plain ``nn.Module`` (see nas.export.load_backbone)."""
    from .export import load_backbone as _load
    return _load(folder, device, check_hash)
