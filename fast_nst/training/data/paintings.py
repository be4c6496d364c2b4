"""Photos paired with paintings, for arbitrary-style kinds (AdaIN, style prediction): each training
item is (photo crop, painting crop), the painting drawn from a folder and augmented.

Both draws are pure functions of (seed, epoch, position), like the photo crops of
`fast_nst.training.data.photos`, so a resumed run sees the same pairs. Validation pairs are fixed: validation
photo i with painting i (mod the number of paintings), centre crops, no augmentation.
Options and their defaults: conf/data/photos_paintings.yaml.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from PIL import Image, ImageEnhance
from torch.utils.data import Dataset

from fast_nst.training.data.decode import scan_images

from fast_nst.training.data.photos import PhotoDataModule, PhotoDataset
from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.io.images import WHITE, ImageError, list_images, load_rgb, pil_to_tensor, resolve_path

log = logging.getLogger("fast_nst")


def augment_painting(im: Image.Image, size: int, rng: random.Random | None, scale: tuple[float, float],
                     flip: bool, jitter: dict[str, float]) -> torch.Tensor:
    """A size x size crop of a painting: short side resized to size x s with s ~ U(scale), random
    crop, optional horizontal flip and colour jitter (brightness, contrast, saturation: factors in
    [1 - a, 1 + a]; hue: a shift in [-a, a] turns). `rng` None: centre crop at scale's low end,
    nothing else (validation)."""
    s = rng.uniform(*scale) if rng else scale[0]
    short = max(size, round(size * s))
    k = short / min(im.size)
    w, h = max(short, round(im.width * k)), max(short, round(im.height * k))
    im = im.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
    x = rng.randint(0, w - size) if rng else (w - size) // 2
    y = rng.randint(0, h - size) if rng else (h - size) // 2
    im = im.crop((x, y, x + size, y + size))
    if rng is None:
        return pil_to_tensor(im)
    if flip and rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    for name, enhancer in (("brightness", ImageEnhance.Brightness), ("contrast", ImageEnhance.Contrast),
                           ("saturation", ImageEnhance.Color)):
        a = float(jitter.get(name, 0.0))
        if a:
            im = enhancer(im).enhance(rng.uniform(max(0.0, 1 - a), 1 + a))
    hue = float(jitter.get("hue", 0.0))
    if hue:
        h_, s_, v_ = im.convert("HSV").split()
        shift = round(rng.uniform(-hue, hue) * 255)
        h_ = h_.point(lambda p: (p + shift) % 256)
        im = Image.merge("HSV", (h_, s_, v_)).convert("RGB")
    return pil_to_tensor(im)


class PaintingPairs(Dataset):
    """Wraps a `PhotoDataset`: item (file index, crop seed) -> (photo, painting). The painting and its
    augmentation come from the crop seed; a plain int (validation) pairs photo i with painting i."""

    def __init__(self, photos: PhotoDataset, paintings: list[Path], size: int, scale: tuple[float, float],
                 flip: bool, jitter: dict[str, float], load_size: int):
        self.photos, self.paintings, self.size = photos, list(paintings), size
        self.scale, self.flip, self.jitter, self.load_size = scale, flip, dict(jitter), load_size
        self.bad: set[Path] = set()

    def __len__(self) -> int:
        return len(self.photos)

    def painting(self, index: int, rng: random.Random | None) -> torch.Tensor:
        for attempt in range(len(self.paintings)):
            path = self.paintings[(index + attempt) % len(self.paintings)]
            if path in self.bad:
                continue
            try:
                # decode once at a bounded size: scale's top end never needs more pixels than this
                im = load_rgb(path, max_size=self.load_size, background=WHITE)
            except ImageError as e:
                self.bad.add(path)
                log.warning("skipping unusable painting: %s", e)
                continue
            return augment_painting(im, self.size, rng, self.scale, self.flip, self.jitter)
        raise ImageError(f"none of the {len(self.paintings)} paintings could be read; check styles.root")

    def __getitem__(self, key):
        photo = self.photos[key]
        if isinstance(key, tuple):
            rng = random.Random(key[1] * 7919 + 17)  # a stream of its own, beside the photo's crop
            return photo, self.painting(rng.randrange(len(self.paintings)), rng)
        return photo, self.painting(int(key), None)


class PhotoPaintingDataModule(PhotoDataModule):
    """`PhotoDataModule` (photos: `root`, validation, loaders, resume) whose items are paired with
    crops of the paintings in `paintings` (a folder, searched recursively). Painting options:
    `painting_size` (crop side), `painting_scale` ([lo, hi]: short side before cropping, in crop
    sides), `painting_flip`, `painting_jitter` ({brightness, contrast, saturation, hue})."""

    def __init__(self, *, paintings: str, painting_size: int, painting_scale: list[float], painting_flip: bool,
                 painting_jitter: dict, **photo_options):
        super().__init__(**photo_options)
        self.painting_options = dict(paintings=paintings, painting_size=int(painting_size),
                                     painting_scale=tuple(float(v) for v in painting_scale),
                                     painting_flip=bool(painting_flip), painting_jitter=dict(painting_jitter or {}))
        lo, hi = self.painting_options["painting_scale"]
        if not 1.0 <= lo <= hi:
            raise ConfigError(f"data.painting_scale={list(painting_scale)}: needs 1 <= low <= high (the short side "
                              "before cropping, in crop sides)")
        self.painting_files: list[Path] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None and isinstance(self.train_set, PaintingPairs):
            return
        super().setup(stage)
        o = self.painting_options
        if not o["paintings"]:
            raise ConfigError("styles.root is required: a folder of paintings to train on (styles.root=DIR)")
        folder = resolve_path(o["paintings"])
        if not folder.is_dir():
            raise MissingPathError(f"styles.root={o['paintings']}: no such folder (looked in {folder}); point it "
                                   "at a folder of paintings")
        found = list_images(folder)
        good, bad = scan_images(found, 16)
        for path, reason in bad:
            self.skip_log.record(path, reason)
        if not good:
            raise ConfigError(f"styles.root={o['paintings']}: no usable painting among {len(found)} image files "
                              f"under {folder}")
        self.painting_files = good
        size, (lo, hi) = o["painting_size"], o["painting_scale"]
        make = lambda ds: PaintingPairs(ds, good, size, (lo, hi), o["painting_flip"], o["painting_jitter"],  # noqa: E731
                                        load_size=round(2 * size * hi))
        self.train_set = make(self.train_set)
        self.val_set = make(self.val_set) if self.val_set else None
        log.info("data: %d paintings from %s, %d px crops", len(good), folder, size)

    def _require_one_readable(self, ds, root, found) -> None:
        super()._require_one_readable(ds.photos if isinstance(ds, PaintingPairs) else ds, root, found)
