"""Loading an export folder back as a plain ``nn.Module``: the genotype rebuilds the network, the weights
fill it.  Nothing in the folder is unpickled as code (``weights_only=True``, ``yaml.safe_load``, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from search_spaces import GenotypeError, build_network, load_genotype

from ..files import load_torch_file
from .sources import ExportError
from .writer import CARD_FILE, FORMAT, GENOTYPE_FILE, WEIGHTS_FILE, sha256


def read_card(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / CARD_FILE
    if not folder.is_dir():
        raise ExportError(f"{folder} is not a folder; give a folder written by fsnas export")
    if not path.is_file():
        raise ExportError(f"{folder} has no {CARD_FILE}: not an fsnas export folder (fsnas export RUN_DIR --out DIR "
                          f"writes one)")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is not readable JSON ({type(exc).__name__}); export the run again") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ExportError(f"{path} is not an {FORMAT} model card (format: "
                          f"{card.get('format') if isinstance(card, dict) else None!r}); export the run again")
    return card


def load_backbone(folder: str | Path, device: str | torch.device = "cpu", check_hash: bool = True) -> nn.Module:
    """The exported backbone in eval mode: [B, C, H, W] normalised images -> [B, features]."""
    folder = Path(folder)
    card = read_card(folder)
    try:
        genotype = load_genotype(folder / GENOTYPE_FILE)
    except (OSError, GenotypeError, ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"{folder / GENOTYPE_FILE} is not a valid genotype ({str(exc).splitlines()[0][:200]})") \
            from None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ExportError(f"{weights} is missing; export the run again")
    if check_hash and sha256(weights) != card.get("weights", {}).get("sha256"):
        raise ExportError(f"{weights} does not match the sha256 in {CARD_FILE}: the file changed after export. "
                          f"Export again, or pass check_hash=False if you changed it on purpose")
    state = load_torch_file(weights, "tensor state dict", "Export the run again", error=ExportError)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{weights} is not a state dict of tensors; export the run again")
    net = build_network(genotype, in_channels=int(card["input"]["shape"][0]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ExportError(f"{weights} does not fit the architecture in {GENOTYPE_FILE} "
                          f"({str(exc).splitlines()[1].strip()[:200] if len(str(exc).splitlines()) > 1 else exc})"
                          ) from None
    return net.to(device).eval()
