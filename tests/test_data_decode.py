"""Decoders (PIL / torchvision.io), loader speed options and the throughput helper."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from fast_nst.training.data.decode import load_crop

from fast_nst.training.data.sampler import loader_kwargs, worker_init

from fast_nst.training.data.photos import PhotoDataset, loader_throughput
from conftest import ROOT, data_module


def test_torchvision_decode_matches_pil_crop():
    """Same file, same crop seed: same geometry, near-identical pixels (only the resize kernels differ)."""
    photo = ROOT / "assets" / "photos" / "chelsea_cat.jpg"  # 451x300: resized and cropped
    for seed in (None, 7):
        a = load_crop(photo, 128, seed, "pil")
        b = load_crop(photo, 128, seed, "torchvision")
        assert a.shape == b.shape == (3, 128, 128) and b.dtype == torch.float32
        assert (a - b).abs().mean() < 0.02, seed
    # a different crop really is different (the seed reaches the torchvision path)
    assert (load_crop(photo, 128, 1, "torchvision") - load_crop(photo, 128, 2, "torchvision")).abs().mean() > 0.02


def test_torchvision_decoder_applies_exif_rotation(tmp_path):
    im = Image.new("RGB", (120, 60), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 60, 60))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when shown: the blue half ends up on top
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    for dec in ("pil", "torchvision"):
        x = load_crop(tmp_path / "rot.jpg", 60, None, dec)  # shown as 60x120 -> 60x60 centre crop
        assert x.shape == (3, 60, 60)
        top, bottom = x[:, :20].mean((1, 2)), x[:, -20:].mean((1, 2))
        assert top[2] > top[0] and bottom[0] > bottom[2], dec


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_bad_files_are_skipped_with_either_decoder(tmp_path, caplog, decoder):
    files = []
    for i in range(3):
        Image.new("RGB", (300, 200), (i * 60, 90, 30)).save(tmp_path / f"p{i}.jpg")
        files.append(tmp_path / f"p{i}.jpg")
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 3])  # truncated: header fine, pixels missing
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("RGB", (50, 40), (1, 2, 3)).save(tmp_path / "ok.bmp")  # not a torchvision format
    files += [tmp_path / "junk.png", tmp_path / "ok.bmp"]
    ds = PhotoDataset(files, 32, decoder)
    with caplog.at_level("WARNING", logger="fast_nst"):
        xs = [ds[(i, 0)] for i in range(len(files))]
    assert all(x.shape == (3, 32, 32) for x in xs)
    assert ds.bad == {files[1], files[3]}
    assert "p1.jpg" in caplog.text and "junk.png" in caplog.text
    assert torch.equal(xs[1], ds[(2, 0)])  # the next readable file stood in for the bad one


def test_unknown_decoder_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="decoder"):
        PhotoDataset([tmp_path / "a.jpg"], 32, "opencv")


def test_loader_kwargs_drop_options_that_need_workers_or_cuda():
    kw = loader_kwargs(0, pin_memory=True, persistent_workers=True, prefetch_factor=4)
    assert kw == {"num_workers": 0, "pin_memory": torch.cuda.is_available()}
    kw = loader_kwargs(2, pin_memory=False, persistent_workers=True, prefetch_factor=4)
    assert kw == {"num_workers": 2, "pin_memory": False, "persistent_workers": True, "prefetch_factor": 4,
                  "worker_init_fn": worker_init}  # workers leave SIGINT/SIGTERM to the training process


def test_datamodule_with_workers_gives_the_same_batches(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):  # noise: a crop in another place, or another photo, gives other pixels
        Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    batches = []
    for workers in (0, 2):
        dm = data_module(root=str(tmp_path), image_size=32, batch_size=2, num_workers=workers,
                             val_size=0, prefetch_factor=2)
        dm.setup("fit")
        batches.append(torch.cat(list(dm.train_dataloader())))
    assert torch.equal(*batches)


def test_loader_throughput_reports_images_per_second():
    r = loader_throughput(ROOT / "assets" / "photos", image_size=64, batch_size=2, images=4,
                          decoder="torchvision", warmup_batches=1)
    assert r["images"] == 4 and r["images_per_s"] > 0 and r["decoder"] == "torchvision"


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_photo_scale_crops_from_the_photo_resized_to_that_many_crop_sides(decoder):
    """data.photo_scale=2 (experiment=adain, the AdaIN paper's 512-then-256): a crop shows half the
    short side, at the resolution of the photo resized to twice the crop side."""
    from fast_nst.io.images import pil_to_tensor

    photo = ROOT / "assets" / "photos" / "chelsea_cat.jpg"
    whole = load_crop(photo, 64, None, decoder)
    half = load_crop(photo, 64, None, decoder, scale=2.0)
    assert half.shape == whole.shape == (3, 64, 64)
    im = Image.open(photo).convert("RGB")
    s = 128 / min(im.size)
    big = im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR)
    x, y = (big.width - 64) // 2, (big.height - 64) // 2
    want = pil_to_tensor(big.crop((x, y, x + 64, y + 64)))
    assert (half - want).abs().mean() < 0.02  # the centre of the 2x image, not the whole short side
    assert (whole - want).abs().mean() > 0.05


def test_photo_scale_below_one_is_refused():
    from fast_nst.io.errors import ConfigError

    with pytest.raises(ConfigError, match="photo_scale"):
        data_module(photo_scale=0.5)
