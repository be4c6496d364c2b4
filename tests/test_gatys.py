"""Optimisation-based stylization (optimize.py) and the quality benchmark (fast-nst quality),
against the real VGG weights."""

from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import ROOT, compose, run_script
from fast_nst.stylize.color import luminance_image, recolour, rgb_to_yiq, yiq_to_rgb
from fast_nst.optimize.gatys import CAFFE_MEAN_PIXEL, GatysObjective, first_reaching, initial_image, optimize_pixels
from fast_nst.io.images import load_rgb, pil_to_tensor
from fast_nst.models.losses import PerceptualLoss
from fast_nst.models.vgg import VGGEncoder

PHOTO = ROOT / "assets" / "photos" / "chelsea_cat.jpg"
STARRY = ROOT / "assets" / "styles" / "starry_night.jpg"
SCREAM = ROOT / "assets" / "styles" / "the_scream.jpg"
C_LAYERS, S_LAYERS = ["relu3_3"], ["relu1_2", "relu2_2", "relu3_3"]


def _img(path, size=64):
    return pil_to_tensor(load_rgb(path, size)).unsqueeze(0)


@pytest.fixture(scope="module")
def encoder(vgg16_weights):
    return VGGEncoder(C_LAYERS + S_LAYERS, arch="vgg16", weights=vgg16_weights, pooling="avg")


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


@pytest.mark.slow
def test_preserve_color_keeps_the_content_chroma(tmp_path, vgg19_weights):
    """Run optimize.py both ways and measure the IQ (chroma) distance to the photo."""
    errs = {}
    for preserve in ("false", "true"):
        out = tmp_path / f"out_{preserve}.png"
        r = run_script("optimize.py", f"content={PHOTO}", "style=starry_night", f"output={out}",
                       "image_size=64", "iterations=15", f"preserve_color={preserve}",
                       f"loss_net.weights={vgg19_weights}", "log_every=5")
        assert r.returncode == 0, r.stderr[-3000:]
        img = pil_to_tensor(load_rgb(out)).unsqueeze(0)
        content = _img(PHOTO)
        assert img.shape == content.shape
        errs[preserve] = _chroma_error(img, content)
    # measured: 1e-8 with preservation (a luminance change moves R, G and B equally, so even 8-bit
    # rounding keeps I and Q) vs 0.093 without
    assert errs["true"] < 0.01, errs
    assert errs["false"] > 3 * errs["true"], errs


@pytest.mark.slow
def test_optimize_cli_prints_a_falling_loss_and_saves_snapshots(tmp_path, vgg19_weights):
    out = tmp_path / "cat.png"
    r = run_script("optimize.py", f"content={PHOTO}", f"style={SCREAM}", f"output={out}", "image_size=64",
                   "iterations=20", "save_every=10", "log_every=10", f"loss_net.weights={vgg19_weights}")
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
    cfg = compose("optimize", [f"preset={preset}"])
    if preset == "gatys2016":
        assert (cfg.loss_net.arch, cfg.loss_net.pooling, cfg.optimizer, cfg.init) == ("vgg19", "avg", "lbfgs", "content")
        assert list(cfg.loss.content_layers) == ["relu4_2"]
        assert list(cfg.loss.style_layers) == [f"relu{i}_1" for i in range(1, 6)]
    else:
        assert (cfg.loss_net.arch, cfg.optimizer, cfg.lr) == ("vgg16", "adam", 1.0) and cfg.lr_step


def test_noise_start_is_johnsons_mean_pixel_plus_unit_gaussian():
    photo = torch.rand(1, 3, 64, 48)
    x = initial_image("noise", photo, generator=torch.Generator().manual_seed(0)) * 255.0
    assert x.shape == photo.shape
    for c, mean in enumerate(CAFFE_MEAN_PIXEL):
        assert abs(float(x[0, c].mean()) - mean) < 0.1
        assert 0.9 < float(x[0, c].std()) < 1.1  # N(0, 1) grey levels: an almost flat grey image
    again = initial_image("noise", photo, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again * 255.0, x)  # seeded: every quality run starts from the same image
    with pytest.raises(ValueError, match="init must be one of"):
        initial_image("photo", photo)


@pytest.mark.parametrize("project", [False, True])
def test_projected_lbfgs_keeps_the_variable_in_range(project):
    """An objective whose optimum lies outside the valid range (pixels pushed towards 1.5): projected
    L-BFGS clips the variable after every iteration; plain L-BFGS lets it leave [0, 1] (the objective
    still sees it clipped, so its loss stops improving there)."""
    target = torch.full((1, 3, 8, 8), 1.5)

    def objective(img):
        return {"loss": ((img - target) ** 2).sum()}

    seen = []
    optimize_pixels(objective, torch.full((1, 3, 8, 8), 0.5), "lbfgs", iterations=10,
                    project=project, callback=lambda k, terms, img: seen.append(img.clone()))
    lo, hi = min(float(v.min()) for v in seen), max(float(v.max()) for v in seen)
    if project:
        assert 0.0 <= lo and hi <= 1.0
    else:
        assert hi > 1.0


def test_quality_config_composes():
    cfg = compose("quality", ["size=64"])
    assert cfg.size == 64 and cfg.iterations > 0 and cfg.stop_early is True
    assert cfg.init == "noise"  # the paper's protocol is the default


def test_first_reaching():
    assert first_reaching([5.0, 4.0, 3.0, 2.0], 3.0) == 2
    assert first_reaching([5.0, 4.0], 1.0) is None


@pytest.mark.slow
def test_quality_script_on_the_shipped_model(tmp_path, vgg16_weights):
    r = run_script("quality", "ckpt=starry_night", f"photos={ROOT / 'assets' / 'photos'}",
                   "num_photos=2", "size=64", "iterations=12", "report_at=[5,10]", "init=[noise,content]",
                   f"output={tmp_path}", f"vgg_weights={vgg16_weights}", f"cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "equivalent L-BFGS iterations from noise: median" in r.stdout
    assert "equivalent L-BFGS iterations from content: median" in r.stdout
    report = json.loads((tmp_path / "quality.json").read_text())
    assert report["summary"]["photos"] == 2 and len(report["per_photo"]) == 2
    for p in report["per_photo"]:
        ff = p["feedforward_loss"]
        assert ff > 0 and set(p["feedforward_terms"]) == {"content", "style", "tv", "loss"}
        for init, run in p["runs"].items():
            losses, k = run["losses"], run["equivalent_iterations"]
            assert losses[0] > 0 and len(losses) >= 11  # ran at least to the last report_at iteration
            assert set(run["terms_at"]) == {"5", "10"}
            assert run["terms_at"]["10"]["loss"] == pytest.approx(losses[10])
            if k is not None:  # the reported iteration really is the first at or below the network's loss
                assert losses[k] <= ff and all(v > ff for v in losses[:k])
        # the photo starts with zero content loss; the grey noise image must build the content
        assert p["runs"]["content"]["start_terms"]["content"] == 0
        # the noise start is far from the photo: a sizeable content term (style dominates at weight 5)
        assert p["runs"]["noise"]["start_terms"]["content"] > 0.01 * p["runs"]["noise"]["start_terms"]["loss"]
    png = (tmp_path / "quality.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_quality_accepts_a_training_checkpoint(tmp_path):
    """Periodic Lightning checkpoints are evaluated directly (time-to-quality over a run). The
    hyper-parameters are laid out as StyleTransferModule saves them (model with its kind, paintings)."""
    from fast_nst.optimize.quality import load_for_quality
    from fast_nst.kinds import load_network

    net, info = load_network(ROOT / "checkpoints" / "starry_night.safetensors")
    hp = {"model": {"kind": info.kind, **info.network}, "paintings": [p.to_dict() for p in info.styles],
          "loss": info.loss, "loss_net": info.loss_net, "init_from": None}
    ckpt = tmp_path / "step0000200.ckpt"
    torch.save({"hyper_parameters": hp, "global_step": 200,
                "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    again, info2, step = load_for_quality(ckpt, torch.device("cpu"))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x))
    assert step == 200 and info2.style_names == info.style_names and info2.loss == info.loss
    with pytest.raises(ValueError, match="not a fast_nst training checkpoint"):
        torch.save({"hyper_parameters": {"model": net.config}, "state_dict": {}}, tmp_path / "old.ckpt")
        load_for_quality(tmp_path / "old.ckpt", torch.device("cpu"))
