"""Optimisation-based stylization (optimize.py) and the quality benchmark (scripts/quality.py),
against the real VGG weights."""

from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import CONF, ROOT, run_script, vgg_source
from fast_nst.color import luminance_image, rgb_to_yiq, yiq_to_rgb
from fast_nst.gatys import GatysObjective, first_reaching, optimize_pixels
from fast_nst.images import load_rgb, pil_to_tensor
from fast_nst.losses import PerceptualLoss
from fast_nst.models.vgg import VGGEncoder

PHOTO = ROOT / "assets" / "photos" / "chelsea_cat.jpg"
STARRY = ROOT / "assets" / "styles" / "starry_night.jpg"
SCREAM = ROOT / "assets" / "styles" / "the_scream.jpg"
C_LAYERS, S_LAYERS = ["relu3_3"], ["relu1_2", "relu2_2", "relu3_3"]


def _img(path, size=64):
    return pil_to_tensor(load_rgb(path, size)).unsqueeze(0)


@pytest.fixture(scope="module")
def encoder():
    return VGGEncoder(C_LAYERS + S_LAYERS, arch="vgg16", weights=vgg_source("vgg16"), pooling="avg")


def _objective(encoder, content, styles, blend=None, style_weight=1.0):
    p = PerceptualLoss(encoder, C_LAYERS, S_LAYERS, content_weight=1.0, style_weight=style_weight, tv_weight=1.0)
    p.set_style(styles, blend)
    return GatysObjective(p, content)


@pytest.mark.parametrize("optimizer,lr", [("lbfgs", 1.0), ("adam", 4.0)])
def test_twenty_iterations_lower_the_loss(encoder, optimizer, lr):
    content = _img(PHOTO)
    obj = _objective(encoder, content, [_img(STARRY)])
    res = optimize_pixels(obj, content, optimizer, iterations=20, lr=lr)
    assert len(res.losses) == 21  # x_0 .. x_20
    assert res.losses[-1] < 0.7 * res.losses[0], res.losses
    assert res.image.shape == content.shape and 0 <= res.image.min() and res.image.max() <= 1


def test_objective_equals_the_training_loss(encoder):
    """GatysObjective caches content targets but must give PerceptualLoss's value exactly."""
    content, out = _img(PHOTO), torch.rand_like(_img(PHOTO))
    obj = _objective(encoder, content, [_img(STARRY)])
    with torch.no_grad():
        a, b = obj(out), obj.perceptual(out, content)
    for k in ("content", "style", "tv", "loss"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=0)


def test_blend_one_zero_equals_the_single_style(encoder):
    content, x = _img(PHOTO), torch.rand_like(_img(PHOTO))
    single = _objective(encoder, content, [_img(STARRY)])
    blended = _objective(encoder, content, [_img(STARRY), _img(SCREAM)], blend=[1.0, 0.0])
    other = _objective(encoder, content, [_img(STARRY), _img(SCREAM)], blend=[0.5, 0.5])
    with torch.no_grad():
        s, b, o = single(x)["style"], blended(x)["style"], other(x)["style"]
    torch.testing.assert_close(b, s, rtol=1e-6, atol=0)
    assert abs(float(o) - float(s)) > 1e-3 * float(s)  # the second style really enters a real blend


def test_yiq_round_trip_and_recolour_keeps_chroma():
    x = torch.rand(2, 3, 9, 7)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5, rtol=0)
    grey = luminance_image(x)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


def _chroma_error(img, content):
    return float((rgb_to_yiq(img)[:, 1:] - rgb_to_yiq(content)[:, 1:]).abs().mean())


def test_preserve_color_keeps_the_content_chroma(tmp_path):
    """Run optimize.py both ways and measure the IQ (chroma) distance to the photo."""
    errs = {}
    for preserve in ("false", "true"):
        out = tmp_path / f"out_{preserve}.png"
        r = run_script("optimize.py", f"content={PHOTO}", "style=starry_night", f"output={out}",
                       "image_size=64", "iterations=15", f"preserve_color={preserve}",
                       f"loss_net.weights={vgg_source('vgg19')}", "log_every=5")
        assert r.returncode == 0, r.stderr[-3000:]
        img = pil_to_tensor(load_rgb(out)).unsqueeze(0)
        content = _img(PHOTO)
        assert img.shape == content.shape
        errs[preserve] = _chroma_error(img, content)
    # measured: 1e-8 with preservation (a luminance change moves R, G and B equally, so even 8-bit
    # rounding keeps I and Q) vs 0.093 without
    assert errs["true"] < 0.01, errs
    assert errs["false"] > 3 * errs["true"], errs


def test_optimize_cli_prints_a_falling_loss_and_saves_snapshots(tmp_path):
    out = tmp_path / "cat.png"
    r = run_script("optimize.py", f"content={PHOTO}", f"style={SCREAM}", f"output={out}", "image_size=64",
                   "iterations=20", "save_every=10", "log_every=10", f"loss_net.weights={vgg_source('vgg19')}")
    assert r.returncode == 0, r.stderr[-3000:]
    losses = [float(m) for m in re.findall(r"iter\s+\d+/20 .*loss (\S+)", r.stdout + r.stderr)]
    assert len(losses) == 3 and losses[-1] < losses[0], losses  # iterations 0, 10, 20
    assert out.is_file() and (tmp_path / "cat_iter0010.png").is_file()


def test_optimize_cli_errors_are_specific(tmp_path):
    r = run_script("optimize.py", f"content={tmp_path / 'missing.jpg'}", "iterations=1")
    assert r.returncode == 2 and "missing.jpg: no such file" in r.stderr
    r = run_script("optimize.py", "style=not_a_painting", "iterations=1")
    assert r.returncode == 2 and "not a bundled style" in r.stderr
    r = run_script("optimize.py", "style=[starry_night,the_scream]", "style_blend=[1.0]", "iterations=1")
    assert r.returncode == 2 and "style_blend has 1 weights for 2 styles" in r.stderr


@pytest.mark.parametrize("preset", ["gatys2016", "vgg16_adam"])
def test_presets_compose(preset):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF / "optimize"), version_base="1.3"):
        cfg = compose(config_name="optimize", overrides=[f"preset={preset}"])
    if preset == "gatys2016":
        assert (cfg.loss_net.arch, cfg.loss_net.pooling, cfg.optimizer, cfg.init) == ("vgg19", "avg", "lbfgs", "content")
        assert list(cfg.loss.content_layers) == ["relu4_2"]
        assert list(cfg.loss.style_layers) == [f"relu{i}_1" for i in range(1, 6)]
    else:
        assert (cfg.loss_net.arch, cfg.optimizer, cfg.lr) == ("vgg16", "adam", 1.0) and cfg.lr_step


def test_quality_config_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF / "optimize"), version_base="1.3"):
        cfg = compose(config_name="quality", overrides=["size=64"])
    assert cfg.size == 64 and cfg.iterations > 0 and cfg.stop_early is True


def test_first_reaching():
    assert first_reaching([5.0, 4.0, 3.0, 2.0], 3.0) == 2
    assert first_reaching([5.0, 4.0], 1.0) is None


def test_quality_script_on_the_shipped_model(tmp_path):
    r = run_script("scripts/quality.py", "ckpt=starry_night", f"photos={ROOT / 'assets' / 'photos'}",
                   "num_photos=2", "size=64", "iterations=15", "stop_early=false", f"output={tmp_path}",
                   f"vgg_weights={vgg_source('vgg16')}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "equivalent L-BFGS iterations: median" in r.stdout
    report = json.loads((tmp_path / "quality.json").read_text())
    assert report["summary"]["photos"] == 2 and len(report["per_photo"]) == 2
    for p in report["per_photo"]:
        losses, k = p["lbfgs_losses"], p["equivalent_iterations"]
        assert p["feedforward_loss"] > 0 and losses[0] > 0 and len(losses) == 16  # x_0 .. x_15
        if k is not None:  # the reported iteration really is the first at or below the network's loss
            assert losses[k] <= p["feedforward_loss"] and all(v > p["feedforward_loss"] for v in losses[:k])
    png = (tmp_path / "quality.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
