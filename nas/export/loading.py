"""Loading an export folder back as a plain ``nn.Module``: the genotype rebuilds the network, the weights
fill it.  Nothing in the folder is unpickled as code (``weights_only=True``, ``yaml.safe_load``, JSON), but for
the torch.export program (``format="pt2"``): ``torch.export.load`` unpickles, so its bytes are loaded only after
their sha256 matches the model card's."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch
from torch import nn

from search_spaces import GenotypeError, build_network, load_genotype

from ..files import load_torch_file
from .sources import ExportError
from .writer import CARD_FILE, FORMAT, GENOTYPE_FILE, PT2_FILE, WEIGHTS_FILE, sha256

FORMATS = ("weights", "pt2")


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


def load_backbone(folder: str | Path, device: str | torch.device = "cpu", check_hash: bool = True,
                  format: str = "weights") -> nn.Module:  # noqa: A002 (the word users know)
    """The exported backbone in eval mode: [B, C, H, W] normalised images -> [B, features].

    ``format="weights"``: the network rebuilt from ``genotype.yaml`` and ``weights.pt`` (trainable).
    ``format="pt2"``: the torch.export program ``backbone.pt2`` (runs without fsnas's network code; fixed in
    eval mode); it needs ``check_hash``, as torch.export.load unpickles."""
    if format not in FORMATS:
        raise ExportError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    folder = Path(folder)
    card = read_card(folder)
    if format == "pt2":
        return _load_pt2(folder, card, device, check_hash)
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


class ExportedBackbone(nn.Module):
    """A loaded torch.export program, fixed in eval mode (its BatchNorms use the running statistics it was
    exported with): ``eval()`` is accepted, ``train()`` refused."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

    def train(self, mode: bool = True) -> "ExportedBackbone":
        if mode:
            raise ExportError(f"a backbone loaded from {PT2_FILE} is fixed in eval mode; to train it, load it with "
                              f"format='weights'")
        return self


def _load_pt2(folder: Path, card: dict, device: str | torch.device, check_hash: bool) -> nn.Module:
    path = folder / PT2_FILE
    if not check_hash:
        raise ExportError(f"{path} is loaded only after its sha256 matches {CARD_FILE} (torch.export.load unpickles, "
                          f"so a changed file could run code); drop check_hash=False, or load format='weights'")
    entry = card.get("pt2") if isinstance(card.get("pt2"), dict) else {}
    if not entry.get("sha256"):
        raise ExportError(f"{folder / CARD_FILE} lists no {PT2_FILE} (the folder was exported before fsnas wrote "
                          f"torch.export programs); export the run again, or load format='weights'")
    if not path.is_file():
        raise ExportError(f"{path} is missing; export the run again")
    data = path.read_bytes()  # hashed and loaded from the same bytes
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ExportError(f"{path} does not match the sha256 in {CARD_FILE}: the file changed after export, and it "
                          f"is never loaded unchecked (torch.export.load unpickles). Export the run again")
    try:
        program = torch.export.load(io.BytesIO(data))
        if torch.device(device).type != "cpu":  # moves the graph's device arguments too, not only the tensors
            from torch.export.passes import move_to_device_pass
            program = move_to_device_pass(program, device)
        module = program.module()
    except Exception as exc:  # noqa: BLE001 (any failure of torch's deserialiser is one message)
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
        raise ExportError(f"{path} does not load with torch {torch.__version__} (written with torch "
                          f"{entry.get('torch')}; {reason}). torch.export files may not load in another torch "
                          f"version: load format='weights', or export again with this torch") from None
    return ExportedBackbone(module).to(device)
