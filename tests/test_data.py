import numpy as np
import pytest
import torch
from PIL import Image

from conftest import data_module
from fast_nst.training.data.decode import load_crop
from fast_nst.training.data.sampler import EpochSampler
from fast_nst.training.data.photos import PhotoDataset


def _make_photos(d, n=6, size=(80, 60)):
    """Distinct photos with a diagonal gradient, so that different crops differ."""
    w, h = size
    ramp = np.add.outer(np.arange(h), np.arange(w)) * (200 / (w + h))
    for i in range(n):
        arr = np.stack([ramp + i * 8, np.full_like(ramp, 100), 255 - ramp - i * 8], -1)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(d / f"p{i}.jpg", quality=95)
    return sorted(d.glob("*.jpg"))


def test_corrupt_images_are_skipped_counted_and_named(tmp_path, caplog):
    _make_photos(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    sub = tmp_path / "nested"
    sub.mkdir()
    Image.new("RGB", (70, 90)).save(sub / "deep.png")
    dm = data_module(root=str(tmp_path), image_size=32, batch_size=2, num_workers=0, val_size=1)
    with caplog.at_level("WARNING", logger="fast_nst"):
        dm.setup("fit")
    assert len(dm.skipped) == 1 and "broken.jpg" in dm.skipped[0]
    assert "broken.jpg" in caplog.text
    assert len(dm.train_set) + len(dm.val_set) == 7  # 6 + the nested png
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (2, 3, 32, 32) and 0 <= batch.min() and batch.max() <= 1


def test_truncated_file_is_skipped_at_load_time(tmp_path, caplog):
    files = _make_photos(tmp_path, n=3, size=(300, 200))
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 3])  # header fine, pixels missing
    ds = PhotoDataset(files, 32)
    with caplog.at_level("WARNING", logger="fast_nst"):
        x = ds[(1, 0)]
    assert x.shape == (3, 32, 32)
    assert files[1] in ds.bad and "p1.jpg" in caplog.text


def test_sampler_is_seeded_and_resumes_mid_epoch():
    s = EpochSampler(10, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2)
    assert list(s) == full
    s.set_epoch(3)
    assert list(s) != full
    s.set_epoch(2)
    s.start = 4
    assert list(s) == full[4:]
    assert sorted(i for i, _ in full) == list(range(10))


def test_missing_folder_and_too_few_images(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root"):
        data_module(root=str(tmp_path / "nope")).setup("fit")
    _make_photos(tmp_path, n=2)
    with pytest.raises(ValueError, match="batch_size"):
        data_module(root=str(tmp_path), batch_size=4, val_size=0, num_workers=0).setup("fit")


def test_validation_split_is_fixed(tmp_path):
    _make_photos(tmp_path, n=8)
    a = data_module(root=str(tmp_path), batch_size=2, val_size=2, num_workers=0)
    b = data_module(root=str(tmp_path), batch_size=2, val_size=2, num_workers=0)
    a.setup("fit"), b.setup("fit")
    assert a.val_set.files == b.val_set.files
    assert not set(a.val_set.files) & set(a.train_set.files)
    # validation crops are centre crops: the same in every run, whatever the epoch or seed
    va = torch.stack([a.val_set[i] for i in range(2)])
    vb = torch.stack([b.val_set[i] for i in range(2)])
    assert torch.equal(va, vb)
    centre = load_crop(a.val_set.files[0], a.hparams.image_size, None, a.hparams.decoder)
    assert torch.equal(va[0], centre)
    assert not torch.equal(va[0], a.val_set[(0, 1)])  # a seeded (random) crop differs
