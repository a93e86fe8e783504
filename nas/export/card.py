"""The model card: ``model_card.json`` (everything, machine-readable) and ``model_card.md`` (for people)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..files import atomic_write_bytes, write_json


def write_card(card: dict, folder: Path) -> None:
    write_json(folder / "model_card.json", card)
    atomic_write_bytes(folder / "model_card.md", render_markdown(card).encode())


def _ms(stats: dict) -> str:
    return f"{stats['median_ms']:.3f} ms (median of {stats['count']}; mean {stats['mean_ms']:.3f})"


def render_markdown(card: dict) -> str:
    inp, lat, prov, ver = card["input"], card["latency"], card["provenance"], card["verification"]
    dev = lat["device"]
    device = f"{dev['name']} ({dev['type']}" + (f", {dev['threads']} threads" if "threads" in dev else "") + \
        f", torch {dev['torch']})"
    lines = [f"# fsnas backbone: {card['space']} architecture", "",
             "A feature extractor for few-shot learning: images in, one embedding per image out. Load it with "
             "`nas.load_backbone(FOLDER)` (plain PyTorch, weights only), `nas.load_backbone(FOLDER, format='pt2')` "
             f"(the torch.export program `{card['files']['pt2']}`, torch {card['pt2']['torch']}; dynamic batch), "
             f"`torch.jit.load(FOLDER/{card['files']['torchscript']})` or any ONNX runtime "
             f"(`{card['files']['onnx']}`).", "",
             "## Model", "",
             f"- Parameters: {card['parameters']:,}",
             f"- Multiply-accumulates per image at {inp['shape']}: {card['macs']:,}",
             f"- Output: {card['output']['features']} features per image",
             f"- Input: {inp['shape']} (C, H, W), {inp['layout']}; mean {inp['mean']}, std {inp['std']}"
             + (f" (statistics of {inp['dataset']})" if inp.get("dataset") else ""),
             f"- Weights: {card['weights']['origin']}; sha256 `{card['weights']['sha256'][:16]}…`", "",
             "## Few-shot accuracy", ""]
    if card["accuracy"]:
        lines += ["| dataset | split | task | accuracy | episodes | BatchNorm |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['dataset']} | {r['split']} | {r['n_way']}-way {r['k_shot']}-shot | "
                  f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}% (95% CI) | {r['episodes']} | {r['bn_mode']} |"
                  for r in card["accuracy"]]
    elif card.get("search_score") is not None:
        lines.append(f"Not evaluated on test episodes. Search candidate rank {card['rank']}: one-shot score "
                     f"{100 * card['search_score']:.2f}% on meta-validation episodes with inherited weights "
                     f"(a ranking signal, not a test accuracy). Retrain with `fsnas retrain --arch FOLDER`.")
    else:
        lines.append("Not evaluated.")
    batches = [k for k in lat if k.startswith("batch_")]
    lines += ["", "## Latency", "", f"Measured at export on {device}; {lat['method']}.", ""]
    lines += [f"- {k.replace('_', ' ')}: {_ms(lat[k])}" for k in batches]
    lines.append(f"- Latency table: {lat['table']['fingerprint'] if lat.get('table') else 'none (no latency objective)'}")
    lines += ["", "## Provenance", ""]
    lines += [f"- {k}: {v}" for k, v in prov.items() if k != "config" and v is not None]
    diff = ver["onnx_max_abs_diff"]
    lines += ["", "## Checks at export", "",
              f"- TorchScript output vs network: max |diff| {ver['torchscript_max_abs_diff']:.2e}",
              f"- ONNX: {ver['onnx_checked_with']}" + (f", max |diff| {diff:.2e}" if diff is not None else ""),
              f"- torch.export program: {ver['pt2_checked_with']}, max |diff| {ver['pt2_max_abs_diff']:.2e}; "
              f"sha256 `{card['pt2']['sha256'][:16]}…`",
              "", "## Architecture", "", "```yaml", yaml.safe_dump(card["architecture"], sort_keys=False,
                                                                      default_flow_style=None).rstrip(), "```"]
    if prov.get("config"):
        lines += ["", "## Run config", "", "```yaml",
                  yaml.safe_dump(prov["config"], sort_keys=False, default_flow_style=None).rstrip(), "```"]
    return "\n".join(lines) + "\n"
