"""Training photos: any folder of images (recursive), COCO, or the bundled free-licence set.

Data order is a pure function of (seed, epoch), and each crop of (seed, epoch, position), so a
resumed run (`ckpt_path=last`) sees exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Iterator

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from fast_nst.images import ImageError, list_images, open_image, pil_to_tensor, resolve_path, to_rgb

log = logging.getLogger("fast_nst")


def resize_crop(im: Image.Image, size: int, rng: random.Random | None) -> Image.Image:
    """Scale the short side to `size`, then crop size x size (random with `rng`, else centred)."""
    s = size / min(im.size)
    w, h = max(size, round(im.width * s)), max(size, round(im.height * s))
    im = im.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
    x = rng.randint(0, w - size) if rng else (w - size) // 2
    y = rng.randint(0, h - size) if rng else (h - size) // 2
    return im.crop((x, y, x + size, y + size))


class PhotoDataset(Dataset):
    """Indexed by (file index, crop seed) pairs from `EpochSampler`; plain ints mean a centre crop.

    An image that fails to decode is skipped: the next file stands in, and the file is named in a
    warning (once per process), so one bad JPEG in 118k never stops a run.
    """

    def __init__(self, files: list[Path], image_size: int):
        if not files:
            raise ValueError("PhotoDataset got no files")
        self.files, self.image_size = list(files), image_size
        self.bad: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> torch.Tensor:
        idx, seed = key if isinstance(key, tuple) else (key, None)
        for attempt in range(len(self.files)):
            path = self.files[(idx + attempt) % len(self.files)]
            if path in self.bad:
                continue
            try:
                im = to_rgb(open_image(path))
            except ImageError as e:
                self.bad.add(path)
                log.warning("skipping unreadable image (%d skipped so far in this process): %s",
                            len(self.bad), e)
                continue
            rng = random.Random(seed) if seed is not None else None
            return pil_to_tensor(resize_crop(im, self.image_size, rng))
        raise RuntimeError(f"none of the {len(self.files)} images could be read")


class EpochSampler(Sampler):
    """Seeded permutation per epoch that can start part-way through (for exact resume)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        crops = torch.randint(0, 2**31 - 1, (self.n,), generator=g)
        start, self.start = self.start, 0
        for k in range(start, self.n):
            yield int(order[k]), int(crops[k])


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning checkpoints (it calls state_dict/load_state_dict on loaders
    that have them) as (epoch, batches handed out)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._served = 0

    def __iter__(self):
        self._served = self.sampler.start // self.batch_size  # batches skipped on resume count as served
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self._served}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.epoch = state["epoch"]
        self.sampler.start = state["batches"] * self.batch_size


def scan_images(files: list[Path]) -> tuple[list[Path], list[str]]:
    """Header check of every file (cheap: PIL reads only the header). Returns (good, problems)."""
    good, bad = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018 - forces header parse
            good.append(p)
        except Exception as e:
            bad.append(f"{p} ({type(e).__name__}: {e})")
    return good, bad


class PhotoDataModule(pl.LightningDataModule):
    """`root`: a folder searched recursively for images. A fixed validation set is either
    `val_root` or `val_size` files held out by a seeded draw (same every run)."""

    def __init__(
        self,
        root: str,
        image_size: int = 256,
        batch_size: int = 4,
        num_workers: int = 2,
        val_root: str | None = None,
        val_size: int = 4,
        shuffle: bool = True,
        seed: int = 0,
        check_images: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.train_set: PhotoDataset | None = None
        self.val_set: PhotoDataset | None = None
        self.skipped: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        root = resolve_path(hp.root)
        if not root.exists():
            raise FileNotFoundError(
                f"data.root={hp.root}: folder not found (looked in {root}). Point data.root at a "
                "folder of photos, or use data=coco after scripts/download_coco.py")
        files = list_images(root)
        if hp.check_images:
            files, self.skipped = scan_images(files)
            if self.skipped:
                log.warning("skipped %d unreadable image(s) under %s, e.g. %s",
                            len(self.skipped), root, "; ".join(self.skipped[:3]))
        if hp.val_root:
            val = list_images(hp.val_root)
            train = files
        else:
            order = torch.randperm(len(files), generator=torch.Generator().manual_seed(hp.seed)).tolist()
            k = min(hp.val_size, max(0, len(files) - hp.batch_size))
            val = sorted(files[i] for i in order[:k])
            train = [files[i] for i in sorted(order[k:])]
        if len(train) < (hp.batch_size if hp.drop_last else 1):
            raise ValueError(f"data.root={hp.root}: found {len(train)} usable training images, "
                             f"fewer than data.batch_size={hp.batch_size}")
        self.train_set = PhotoDataset(train, hp.image_size)
        self.val_set = PhotoDataset(val, hp.image_size) if val else None
        log.info("data: %d training and %d validation images from %s", len(train), len(val), root)

    def _loader_kwargs(self) -> dict:
        hp = self.hparams
        workers = hp.num_workers
        return dict(num_workers=workers, pin_memory=hp.pin_memory and torch.cuda.is_available(),
                    persistent_workers=hp.persistent_workers and workers > 0)

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        sampler = EpochSampler(len(self.train_set), seed=hp.seed, shuffle=hp.shuffle)
        return ResumableLoader(self.train_set, batch_size=hp.batch_size, sampler=sampler,
                               drop_last=hp.drop_last, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_set:
            return []
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, shuffle=False,
                          **self._loader_kwargs())
