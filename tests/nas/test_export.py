"""fsnas export: round trips through weights, TorchScript, ONNX and torch.export; picks; corrupt files;
retrain --arch."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nas import cli, load_backbone
from nas.checks import load_config
from nas.export import ExportError, read_card
from nas.export.pick import pareto_front, pick_ranks
from nas.export.writer import TOLERANCE
from nas.latency.fingerprint import cpu_name
from nas.pipeline import prepare
from nas.runs import RunDir
from nas.search.evolution import recalibrate_bn
from nas.search.loop import search_samplers
from search_spaces import build_network, create_supernet, load_genotype

from .test_cli import TINY
from .test_search import SEARCH


def fsnas(*args):
    return cli.main(["-q", *map(str, args)])


def export(*args):
    return fsnas("export", *args, "--device", "cpu", "--latency-repeats", "2")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished SPOS search (three candidates) and a retrain of its genotype, evaluated."""
    root = tmp_path_factory.mktemp("export")
    search = {**SEARCH, "search": {**SEARCH["search"], "sampler": "spos", "steps": 8,
                                   "evolution": {**SEARCH["search"]["evolution"], "top_k": 3}}}
    (root / "search.yaml").write_text(yaml.safe_dump(search))
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert fsnas("search", root / "search.yaml", "--out", root / "search") == 0
    assert fsnas("retrain", root / "tiny.yaml", "--arch", root / "search", "--out", root / "retrain") == 0
    return root


@pytest.fixture(scope="module")
def exported(runs):
    assert export(runs / "retrain", "--out", runs / "export-retrain") == 0
    return runs / "export-retrain"


def test_retrain_export_round_trips_through_every_format(runs, exported):
    files = {p.name for p in exported.iterdir()}
    assert {"genotype.yaml", "weights.pt", "backbone.torchscript.pt", "backbone.onnx", "backbone.pt2",
            "model_card.json", "model_card.md", "cells"} <= files
    # the network as the run left it
    genotype = load_genotype(runs / "retrain" / "genotype.yaml")
    assert genotype == load_genotype(runs / "search" / "genotype.yaml")  # --arch took the search result
    ref = build_network(genotype, 1)
    ref.load_state_dict(torch.load(runs / "retrain" / "model.pt", weights_only=True))
    ref.eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = ref(x)
        assert torch.equal(load_backbone(exported)(x), expected)
        scripted = torch.jit.load(str(exported / "backbone.torchscript.pt"))
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=1e-5)
    ort = pytest.importorskip("onnxruntime")  # a test dependency; skipped only outside the test extra
    session = ort.InferenceSession(str(exported / "backbone.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch dimension is dynamic
        out = session.run(None, {"images": x[:batch].numpy()})[0]
        np.testing.assert_allclose(out, expected[:batch].numpy(), atol=1e-5, rtol=1e-4)

    card = read_card(exported)
    summary = json.loads((runs / "retrain" / "summary.json").read_text())
    assert card["parameters"] == sum(p.numel() for p in ref.parameters()) == summary["parameters"]
    assert card["macs"] > 0 and card["input"]["shape"] == [1, 28, 28] and card["input"]["dataset"] == "synthetic"
    assert card["accuracy"] == summary["results"]
    assert card["latency"]["batch_1"]["median_ms"] > 0 and card["latency"]["device"]["type"] == "cpu"
    assert card["latency"]["device"] == {"type": "cpu", "name": cpu_name(), "threads": torch.get_num_threads(),
                                         "torch": torch.__version__}
    assert card["provenance"]["run_id"] == "retrain" and card["provenance"]["seed"] == 0
    assert card["verification"]["onnx_max_abs_diff"] < 1e-4
    md = (exported / "model_card.md").read_text()
    assert f"{card['parameters']:,}" in md and "95% CI" in md and "synthetic" in md


def test_the_torch_export_program_has_a_dynamic_batch_and_matches_the_weights(exported):
    card = read_card(exported)
    pt2 = exported / "backbone.pt2"
    assert card["files"]["pt2"] == pt2.name and card["pt2"]["torch"] == torch.__version__
    assert card["pt2"]["sha256"] == hashlib.sha256(pt2.read_bytes()).hexdigest()
    assert 0 <= card["verification"]["pt2_max_abs_diff"] <= TOLERANCE
    assert "[2, 1, 28, 28]" in card["verification"]["example"]  # so batches 5 and 1 below are not the traced one
    program, plain = load_backbone(exported, format="pt2"), load_backbone(exported)
    assert not program.training and program.eval() is program
    assert not any(type(m).__module__.startswith("search_spaces") for m in program.modules())  # not the network
    assert any(type(m).__module__.startswith("search_spaces") for m in plain.modules())
    with torch.no_grad():
        for batch in (5, 1):
            x = torch.randn(batch, 1, 28, 28)
            out = program(x)
            assert out.shape == (batch, card["output"]["features"])
            torch.testing.assert_close(out, plain(x), atol=TOLERANCE, rtol=0)
    with pytest.raises(ExportError, match="fixed in eval mode; to train it, load it with format='weights'"):
        program.train()
    assert "torch.export program" in (exported / "model_card.md").read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_torch_export_program_moves_to_the_gpu(exported):
    program, plain = load_backbone(exported, "cuda", format="pt2"), load_backbone(exported, "cuda")
    x = torch.randn(3, 1, 28, 28, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(program(x), plain(x), atol=TOLERANCE, rtol=0)


def test_a_changed_or_missing_pt2_is_refused_before_torch_loads_it(exported, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    pt2 = bad / "backbone.pt2"
    original = pt2.read_bytes()
    pt2.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    loaded = []
    real_load = torch.export.load
    monkeypatch.setattr(torch.export, "load", lambda f, **kw: loaded.append(f) or real_load(f, **kw))
    with pytest.raises(ExportError, match="does not match the sha256 in model_card.json: the file changed after "
                                          "export, and it is never loaded unchecked"):
        load_backbone(bad, format="pt2")
    with pytest.raises(ExportError, match="loaded only after its sha256 matches model_card.json"):
        load_backbone(bad, check_hash=False, format="pt2")
    assert loaded == []  # torch.export.load (which unpickles) never saw the changed file
    card = json.loads((bad / "model_card.json").read_text())
    pt2.write_bytes(b"not a zip archive")
    card["pt2"]["sha256"] = hashlib.sha256(b"not a zip archive").hexdigest()  # the card edited to match
    (bad / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ExportError, match=rf"does not load with torch {re.escape(torch.__version__)}.*load format='weights'"):
        load_backbone(bad, format="pt2")
    pt2.unlink()
    with pytest.raises(ExportError, match="backbone.pt2 is missing; export the run again"):
        load_backbone(bad, format="pt2")
    del card["pt2"]  # a folder exported before fsnas wrote torch.export programs
    (bad / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ExportError, match="lists no backbone.pt2"):
        load_backbone(bad, format="pt2")
    with pytest.raises(ExportError, match="format 'onnx' is not one of weights, pt2"):
        load_backbone(bad, format="onnx")
    load_backbone(bad)  # the weights still load


def test_search_export_holds_the_inherited_recalibrated_weights(runs, tmp_path):
    out = tmp_path / "best"
    assert export(runs / "search", "--out", out) == 0
    run = RunDir.open(runs / "search")
    cfg = load_config(run.config_path)
    ds = prepare(cfg, train=False, test=False, search=True).ds
    supernet = create_supernet(cfg.search.space, 1, **cfg.search.space_options)
    supernet.load_state_dict(run.load_checkpoint("search")["supernet"])
    genotype = load_genotype(runs / "search" / "genotype.yaml")
    assert load_genotype(out / "genotype.yaml") == genotype
    subnet = supernet.subnet(genotype)
    train, _ = search_samplers(cfg, ds)
    recalibrate_bn(subnet, [torch.cat([e.support_x, e.query_x]) for e in
                            (train.episode(10**6 + i) for i in range(cfg.search.evolution.bn_batches))])
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(load_backbone(out)(x), subnet.eval()(x), atol=1e-6, rtol=1e-5)
    card = read_card(out)
    assert card["rank"] == 1 and card["accuracy"] == [] and card["search_score"] is not None
    assert card["provenance"]["sampler"] == "spos" and "inherited" in card["weights"]["origin"]


def test_pick_top_k_writes_ranked_folders(runs, tmp_path):
    out = tmp_path / "top"
    assert export(runs / "search", "--pick", "top:2", "--out", out) == 0
    index = json.loads((out / "index.json").read_text())
    assert [m["rank"] for m in index["models"]] == [1, 2]
    table = json.loads((runs / "search" / "candidates.json").read_text())
    for rank in (1, 2):
        assert read_card(out / f"rank{rank}")["architecture"] == table[rank - 1]["genotype"]
        load_backbone(out / f"rank{rank}")


def test_pick_rules():
    rows = [{"score": 0.9, "params": 500}, {"score": 0.8, "params": 100}, {"score": 0.7, "params": 300},
            {"score": 0.85, "params": 200}, {"score": 0.6, "params": 50}]
    assert pareto_front(rows) == [4, 1, 3, 0]  # 0.7 @ 300 is beaten by 0.85 @ 200
    assert pick_ranks(rows, "best") == [1]
    assert pick_ranks(rows, "top:3") == [1, 2, 3]
    assert pick_ranks(rows, "top:9") == [1, 2, 3, 4, 5]
    assert pick_ranks(rows, "pareto:9") == [5, 2, 4, 1]
    assert pick_ranks(rows, "pareto:2") == [5, 1]  # both ends of the front
    assert pick_ranks(rows, "pareto:1") == [1]
    for bad in ("worst", "top:0", "top:x", "pareto", "best:2"):
        with pytest.raises(ExportError, match="use best, top:K or pareto:K"):
            pick_ranks(rows, bad)


class _Payload:
    marker = None

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_corrupt_and_foreign_files_give_clear_errors_and_run_no_code(exported, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    marker = tmp_path / "code-ran"
    _Payload.marker = marker
    torch.save({"w": _Payload()}, bad / "weights.pt")
    with pytest.raises(ExportError, match="changed after export"):
        load_backbone(bad)
    with pytest.raises(ExportError, match="never unpickled as code"):
        load_backbone(bad, check_hash=False)
    assert not marker.exists()
    torch.save({"stem.0.weight": torch.zeros(3)}, bad / "weights.pt")
    with pytest.raises(ExportError, match="does not fit the architecture"):
        load_backbone(bad, check_hash=False)
    (bad / "genotype.yaml").write_text("space: hexagonal\n")
    with pytest.raises(ExportError, match="not a valid genotype"):
        load_backbone(bad, check_hash=False)
    (bad / "model_card.json").write_text("{not json")
    with pytest.raises(ExportError, match="not readable JSON"):
        load_backbone(bad)
    (bad / "model_card.json").unlink()
    with pytest.raises(ExportError, match="not an fsnas export folder"):
        load_backbone(bad)


def test_export_bad_input_exits_2_and_overwrites_nothing(runs, exported, tmp_path, capsys):
    before = (exported / "weights.pt").read_bytes()
    cases = [((runs / "retrain", "--out", exported), "already exists and is not empty"),
             ((tmp_path / "nowhere", "--out", tmp_path / "o1"), "neither a run folder"),
             ((runs / "retrain", "--pick", "top:2", "--out", tmp_path / "o2"), "holds one trained model"),
             ((runs / "search", "--pick", "top", "--out", tmp_path / "o3"), "use best, top:K or pareto:K"),
             ((exported, "--out", tmp_path / "o4"), "already an export folder"),
             ((runs / "retrain", "train.steps=3", "--out", tmp_path / "o5"), "only data.* overrides")]
    for args, message in cases:
        assert fsnas("export", *args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert (exported / "weights.pt").read_bytes() == before
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))
    assert not [p for p in exported.parent.iterdir() if p.name.endswith(".tmp")]  # no half-written folders


def test_export_a_backbone_by_name_and_retrain_from_an_export_folder(runs, exported, tmp_path):
    out = tmp_path / "conv4"
    assert export("conv4", "--input", "3x32x32", "--out", out) == 0
    net = load_backbone(out)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    assert read_card(out)["weights"]["origin"].startswith("initial")
    again = tmp_path / "again"
    assert fsnas("retrain", runs / "tiny.yaml", "train.steps=2", "--arch", exported, "--no-eval", "--out", again) == 0
    assert load_genotype(again / "genotype.yaml") == load_genotype(exported / "genotype.yaml")


def test_an_mtl_run_exports_with_its_scale_shift_folded_in(runs, tmp_path):
    from meta.scale_shift import ScaleShift
    from search_spaces import build_network
    run = tmp_path / "mtl"
    assert fsnas("retrain", runs / "tiny.yaml", "train.learner=mtl", "train.options={steps: 2, lr: 0.05}",
                 "train.steps=6", "train.val_every=0", "--no-eval", "--out", run) == 0
    learned = torch.load(run / "learner.pt", weights_only=True)["ss"]
    assert any(not torch.equal(v, torch.ones_like(v)) for k, v in learned.items() if k.startswith("scale."))
    assert export(run, "--out", tmp_path / "exp") == 0
    hooked = build_network(load_genotype(run / "genotype.yaml"), 1)
    hooked.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    ss = ScaleShift(hooked)
    ss.load_state_dict(learned)
    ss.attach()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(load_backbone(tmp_path / "exp")(x), hooked.eval()(x), atol=1e-5, rtol=1e-5)
    assert "scale/shift (MTL) folded" in read_card(tmp_path / "exp")["weights"]["origin"]
