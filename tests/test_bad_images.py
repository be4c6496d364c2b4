"""Training on a folder of odd and broken files (tests/image_zoo.py): every unusable file is
skipped, counted and named; every usable odd format gives the picture a viewer shows."""

import csv
import logging
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from fast_nst.training.data.decode import load_crop, resize_crop

from fast_nst.training.data.photos import PhotoDataModule
from fast_nst.training.data.report import METRIC, SkippedImagesReport
from fast_nst.io.images import ImageError, load_rgb, to_rgb
from image_zoo import QUADRANTS, make_zoo, quadrant_means, quadrants
from tiny_training import TinyModule

CROP = 64


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return make_zoo(tmp_path_factory.mktemp("zoo"), CROP)


def _files(zoo, usable):
    return [s for s in zoo if s.usable == usable and s.path.is_file()]


def _unusable_names(zoo):
    return {s.name for s in _files(zoo, False)}


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_usable_odd_formats_give_the_pictures_pixels(zoo, decoder):
    assert len(_files(zoo, True)) >= 12
    for s in _files(zoo, True):
        for seed in (None, 3):  # centre crop and a random crop: the geometry follows the picture
            x = load_crop(s.path, CROP, seed, decoder, min_size=32)
            assert x.shape == (3, CROP, CROP) and x.dtype == torch.float32, s.name
            want = np.asarray(resize_crop(s.truth, CROP, random.Random(seed) if seed is not None else None))
            got = x.permute(1, 2, 0).numpy() * 255
            err = np.abs(quadrant_means(got) - quadrant_means(want.astype(np.float64))).max()
            assert err <= s.tolerance, f"{s.name} ({s.kind}), {decoder}, seed {seed}: off by {err:.1f} levels"


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_unusable_files_are_refused_with_their_name_and_reason(zoo, decoder):
    unusable = [s for s in zoo if not s.usable]
    assert len(unusable) >= 9
    for s in unusable:
        with pytest.raises(ImageError) as e:
            load_crop(s.path, CROP, 0, decoder, min_size=32)
        msg = str(e.value)
        assert str(s.path) in msg and s.reason in msg.lower(), (s.name, msg)


def test_zoo_has_the_kinds_the_issue_asks_for(zoo):
    kinds = {s.name for s in zoo}
    assert {"zero_bytes.jpg", "truncated.jpg", "random_bytes.jpg", "png_named.jpg", "notes.png",
            "grey_L.png", "grey_alpha_LA.png", "palette_transparent.png", "rgba.png", "cmyk.jpg",
            "grey16.png", "one_pixel.png", "smaller_than_crop.png", "bomb.png", "exif_rotated.jpg",
            "animated.gif", "lossless.webp", "folder.jpg"} <= kinds
    assert len(kinds) >= 18


def test_sixteen_bit_is_scaled_by_full_scale_not_its_own_maximum():
    dark = np.full((4, 4), 16384, np.uint16)  # a quarter of full scale, and the image's maximum
    assert to_rgb(Image.fromarray(dark)).getpixel((0, 0)) == (64, 64, 64)  # not (255, 255, 255)
    full = np.full((4, 4), 65535, np.uint16)
    assert to_rgb(Image.fromarray(full)).getpixel((0, 0)) == (255, 255, 255)


def test_transparency_is_shown_over_white_for_training_and_kept_apart_for_stylizing():
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(im, background=(255, 255, 255)).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(im).getpixel((0, 0)) == (0, 0, 0)  # the stylizer restores alpha itself


def test_load_rgb_shows_the_exif_rotated_picture(zoo):
    s = next(s for s in zoo if s.name == "exif_rotated.jpg")
    im = load_rgb(s.path)
    assert im.size == s.truth.size  # stored sideways, shown upright
    err = np.abs(quadrant_means(np.asarray(im).astype(float)) - np.array(QUADRANTS)).max()
    assert err < 8, err


def _datamodule(root, **kw):
    """conf/data/bundled.yaml's loader settings (conftest.data_module), on `root`."""
    from conftest import data_module

    args = dict(root=str(root), image_size=CROP, batch_size=2, num_workers=0, val_size=0,
                drop_last=False, min_image_size=32)
    args.update(kw)
    return data_module(**args)


def _one_epoch(dm):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    return torch.cat(list(loader))


@pytest.mark.parametrize("check_images,num_workers", [(True, 0), (False, 2)])
def test_datamodule_skips_counts_and_names_every_unusable_file(zoo, check_images, num_workers, caplog):
    root = zoo[0].path.parent
    dm = _datamodule(root, check_images=check_images, num_workers=num_workers)
    with caplog.at_level(logging.WARNING, logger="fast_nst"):
        dm.setup("fit")
        batches = _one_epoch(dm)  # the truncated files pass the header check; loading finds them
    usable = len(_files(zoo, True)) + 1  # + folder.jpg/inside.jpg: a folder is searched like any other
    # a truncated file has a whole header: only decoding finds it
    passes_header = len([s for s in _files(zoo, False) if s.reason == "truncated"]) if check_images \
        else len(_files(zoo, False))
    assert len(dm.train_set) == usable + passes_header
    assert batches.shape[1:] == (3, CROP, CROP) and torch.isfinite(batches).all()
    assert 0 <= batches.min() and batches.max() <= 1
    skipped = {p.split("/")[-1] for p in dm.skip_log.reasons}
    assert skipped == _unusable_names(zoo)
    assert len(dm.skipped) == len(skipped)
    if num_workers == 0:  # worker processes log through their own handlers
        for name in skipped:
            assert name in caplog.text, name


def test_skips_are_reported_per_epoch_to_the_log_the_logger_and_a_file(zoo, tmp_path, caplog):
    root = zoo[0].path.parent
    dm = _datamodule(root, num_workers=1, persistent_workers=False)
    report = tmp_path / "run" / "skipped_images.tsv"
    trainer = pl.Trainer(max_steps=12, max_epochs=-1, logger=pl.loggers.CSVLogger(tmp_path / "run"),
                         callbacks=[SkippedImagesReport(path=str(report))], log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, accelerator="cpu")
    with caplog.at_level(logging.WARNING, logger="fast_nst"):
        trainer.fit(TinyModule(), datamodule=dm)
    names = _unusable_names(zoo)
    # the summary of the first epoch names every file (those of the header check and the loader)
    summaries = [r.getMessage() for r in caplog.records if "found since the last summary" in r.getMessage()]
    assert summaries and f"{len(names)} in this run" in summaries[0], summaries
    assert all(n in summaries[0] for n in names)
    assert len(summaries) == 1  # later epochs found nothing new: no repeated summary
    rows = list(csv.DictReader(open(report), delimiter="\t"))
    assert {r["path"].split("/")[-1] for r in rows} == names and all(r["reason"] for r in rows)
    metrics = list(csv.DictReader(open(next((tmp_path / "run").rglob("metrics.csv")))))
    counts = [float(r[METRIC]) for r in metrics if r.get(METRIC)]
    assert counts and counts[-1] == len(names)
    assert any("were skipped in this run" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("check_images", [True, False])
def test_folder_with_no_usable_image_fails_at_start(zoo, tmp_path, check_images):
    bad = tmp_path / "bad"
    bad.mkdir()
    for s in _files(zoo, False):
        (bad / s.name).write_bytes(s.path.read_bytes())
    with pytest.raises(ValueError) as e:
        _datamodule(bad, check_images=check_images).setup("fit")
    msg = str(e.value)
    assert f"none of the {len(_files(zoo, False))} image files under {bad} is usable" in msg
    assert "random_bytes.jpg" in msg and "not an image" in msg and "data.root" in msg


def test_folder_without_image_files_fails_at_start(tmp_path):
    (tmp_path / "readme.txt").write_text("no photos here")
    with pytest.raises(ValueError, match="no image files .* under .*searched recursively"):
        _datamodule(tmp_path).setup("fit")


def test_small_pictures_are_upscaled_and_tiny_ones_skipped(tmp_path):
    quadrants(40, 30).save(tmp_path / "small.png")  # short side 30 < 32: skipped
    quadrants(48, 36).save(tmp_path / "ok.png")     # 36 >= 32: upscaled to the 64 px crop
    dm = _datamodule(tmp_path, batch_size=1)
    dm.setup("fit")
    assert [p.name for p in dm.train_set.files] == ["ok.png"]
    assert "smaller than the minimum of 32 px" in dm.skipped[0]
    assert dm.train_set[(0, 1)].shape == (3, CROP, CROP)
