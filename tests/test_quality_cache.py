"""The L-BFGS curve cache of the quality benchmark (fast_nst/optimize/quality.py): a curve is computed once
and reused for any network on the same objective, which is what makes time-to-quality over many
checkpoints affordable. Real VGG16, tiny sizes."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT, run_script
from fast_nst.io.images import list_images
from fast_nst.optimize.quality import evaluate

SHIPPED = ROOT / "checkpoints" / "starry_night.safetensors"


def _run(photos, cache, vgg, **kw):
    return evaluate(SHIPPED, photos, size=32, iterations=6, device=torch.device("cpu"),
                    report_at=(3,), vgg_weights=vgg, cache_dir=cache, **kw)


def test_a_cached_curve_is_reused_and_independent_of_the_photo_list(tmp_path, vgg16_weights):
    photos = list_images(ROOT / "assets" / "photos")[:2]
    first = _run(photos, tmp_path, vgg16_weights)
    entries = sorted(tmp_path.glob("*.json"))
    assert len(entries) == 2                     # one whole-budget curve per photo
    for e in entries:
        assert len(json.loads(e.read_text())["history"]) == 6 + 1
    # The second photo alone gets the same noise start and therefore the same curve.
    alone = _run(photos[1:], None, vgg16_weights)
    assert alone["per_photo"][0]["runs"]["noise"]["losses"] == first["per_photo"][1]["runs"]["noise"]["losses"]
    # A later evaluation reads the file instead of optimising: mark the stored curve and see it come back.
    for e in entries:
        entry = json.loads(e.read_text())
        for h in entry["history"]:
            h["loss"] = 1e30
        entry["history"][-1]["loss"] = 0.0
        e.write_text(json.dumps(entry))
    again = _run(photos, tmp_path, vgg16_weights)
    for p in again["per_photo"]:
        assert p["runs"]["noise"]["losses"][:6] == [1e30] * 6 and p["runs"]["noise"]["equivalent_iterations"] == 6


def test_a_damaged_cache_entry_is_recomputed(tmp_path, vgg16_weights):
    photos = list_images(ROOT / "assets" / "photos")[:1]
    first = _run(photos, tmp_path, vgg16_weights)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    again = _run(photos, tmp_path, vgg16_weights)
    assert again["per_photo"][0]["runs"]["noise"]["losses"] == first["per_photo"][0]["runs"]["noise"]["losses"]
    assert json.loads(entry.read_text())["history"]   # rewritten whole


@pytest.mark.slow
def test_quality_over_a_folder_of_training_checkpoints(tmp_path, vgg16_weights):
    """ckpt=FOLDER evaluates every periodic checkpoint in step order and tabulates them."""
    from fast_nst.kinds import load_network

    net, info = load_network(SHIPPED)
    hp = {"model": {"kind": info.kind, **info.network}, "paintings": [p.to_dict() for p in info.styles],
          "loss": info.loss, "loss_net": info.loss_net, "init_from": None}
    runs = tmp_path / "runs"
    runs.mkdir()
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    for step, scale in ((200, 0.0), (1000, 1.0)):  # step 200: a network with zeroed weights
        torch.save({"hyper_parameters": hp, "global_step": step,
                    "state_dict": {k: v * scale if v.is_floating_point() else v for k, v in state.items()}},
                   runs / f"step{step:07d}.ckpt")
    r = run_script("quality", f"ckpt={runs}", f"photos={ROOT / 'assets' / 'photos'}", "num_photos=2",
                   "size=32", "iterations=8", "report_at=[4]", f"output={tmp_path / 'out'}",
                   f"vgg_weights={vgg16_weights}", f"cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    table = json.loads((tmp_path / "out" / "over_training.json").read_text())
    assert [row["global_step"] for row in table["checkpoints"]] == [200, 1000]
    assert (tmp_path / "out" / "step0000200" / "quality.json").is_file()
    zeroed, trained = table["checkpoints"]
    assert trained["feedforward_loss"] < zeroed["feedforward_loss"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2   # curves shared by both checkpoints
