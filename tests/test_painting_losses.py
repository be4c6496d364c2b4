"""tools/painting_losses.py: each network's terms on its own training objective, for exports and
for periodic training checkpoints (how the multi-style model is compared with per-style ones at
the same number of steps). Real VGG16, 32 px."""

from __future__ import annotations

import json

import pytest
import torch

import painting_losses  # tools/ (pytest's pythonpath)
from conftest import ROOT


def test_a_training_checkpoint_scores_like_its_export(tmp_path, vgg16_weights):
    from fast_nst.kinds import load_network

    net, info = load_network(ROOT / "checkpoints" / "starry_night.safetensors")
    hp = {"model": {"kind": info.kind, **info.network}, "paintings": [p.to_dict() for p in info.styles],
          "loss": info.loss, "loss_net": info.loss_net, "init_from": None}
    ckpt = tmp_path / "zoo_run" / "ckpt" / "step0000400.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"hyper_parameters": hp, "global_step": 400,
                "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    out = tmp_path / "table.json"
    painting_losses.main(["--ckpt", "starry_night", str(ckpt), "--photos", str(ROOT / "assets" / "photos"),
                          "--num-photos", "2", "--size", "32", "--vgg-weights", vgg16_weights, "--out", str(out)])
    rows = {r["network"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"(photo)", "starry_night", "zoo_run@400"}
    assert rows["zoo_run@400"]["steps"] == 400
    for t in ("content", "style", "tv", "loss"):
        assert rows["zoo_run@400"][t] == pytest.approx(rows["starry_night"][t], rel=1e-5)
    # the photo itself: no content loss, far more style loss than the trained network
    assert rows["(photo)"]["content"] == 0 and rows["(photo)"]["style"] > 2 * rows["starry_night"]["style"]


def test_a_painting_no_network_holds_is_scored_on_the_first_networks_objective(tmp_path, vgg16_weights):
    """--paintings: udnie given as a file to a starry_night run is scored with the zoo objective at
    multiplier 1, so the photo's style term is the udnie model's own divided by its multiplier."""
    import shutil

    from fast_nst.io.export import read_export

    out = tmp_path / "table.json"
    copy = shutil.copy(ROOT / "assets" / "styles" / "udnie.jpg", tmp_path / "udnie_copy.jpg")
    painting_losses.main(["--ckpt", "starry_night", "udnie", "--paintings", str(copy),
                          "--photos", str(ROOT / "assets" / "photos"), "--num-photos", "2", "--size", "32",
                          "--vgg-weights", vgg16_weights, "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    photo = {r["painting"]: r for r in rows if r["network"] == "(photo)"}
    assert set(photo) == {"starry_night", "udnie", "udnie_copy"}
    assert not [r for r in rows if r["painting"] == "udnie_copy" and r["network"] != "(photo)"]
    weight = read_export(ROOT / "checkpoints" / "udnie.safetensors").styles[0].weight
    assert weight != 1.0
    assert photo["udnie"]["style"] == pytest.approx(photo["udnie_copy"]["style"] * weight, rel=1e-4)
