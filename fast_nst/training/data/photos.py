"""Training photos: any folder of images (recursive), COCO, or the bundled free-licence set, as a
Lightning data module (`PhotoDataModule`): the folders checked and listed, a fixed validation set,
unusable files skipped and recorded (`SkipLog`), and the loaders, whose order resumes exactly
(`sampler.py`). One photo becomes one crop in `decode.py`; `loader_throughput()` measures the whole
loader (`python benchmarks/bench_data.py`).
"""

from __future__ import annotations

import logging
import math
import queue
import time
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.io.images import IMAGE_EXTENSIONS, ImageError, list_images, resolve_path
from fast_nst.training.data.decode import DECODERS, load_crop, scan_images
from fast_nst.training.data.sampler import EpochSampler, ResumableLoader, dist_world, loader_kwargs

log = logging.getLogger("fast_nst")


class SkipLog:
    """Unusable image files met so far, {path: reason}. DataLoader worker processes send what they
    find over a queue (made with the default start method, the one DataLoader uses); `collect()`
    in the main process gathers it, and is cheap enough to call after every batch."""

    def __init__(self):
        self._reasons: dict[str, str] = {}
        self._pending: list[tuple[str, str]] = []  # found in this process
        self._queue = torch.multiprocessing.Queue()

    def record(self, path: Path | str, reason: str) -> None:
        if torch.utils.data.get_worker_info() is None:
            self._pending.append((str(path), reason))
        else:
            self._queue.put((str(path), reason))

    def collect(self) -> list[tuple[str, str]]:
        """Records not seen before, in arrival order (each file once, whichever process found it)."""
        items, self._pending = self._pending, []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        new = []
        for path, reason in items:
            if path not in self._reasons:
                self._reasons[path] = reason
                new.append((path, reason))
        return new

    @property
    def reasons(self) -> dict[str, str]:
        """Every file recorded so far, from any process: {path: reason}."""
        self.collect()
        return dict(self._reasons)


class PhotoDataset(Dataset):
    """Indexed by (file index, crop seed) pairs from `EpochSampler`; plain ints mean a centre crop.

    An unusable file (see `load_crop`) is skipped: the next file stands in (the same one every
    time, so data order stays a function of the seed), the file is named in a warning once per
    process and recorded in `skips`, so one bad JPEG in 118k never stops a run. `decoder`: "pil"
    or "torchvision"; `min_size`: files with a shorter short side are unusable, and so are files
    over `max_pixels` pixels.
    """

    def __init__(self, files: list[Path], image_size: int, decoder: str = "pil", min_size: int = 1,
                 skips: SkipLog | None = None, max_pixels: int | None = None, scale: float = 1.0):
        if not files:
            raise ValueError("PhotoDataset got no files")
        if decoder not in DECODERS:
            raise ValueError(f"data.decoder must be one of {DECODERS}, got {decoder!r}")
        self.files, self.image_size, self.decoder = list(files), image_size, decoder
        self.min_size, self.skips, self.max_pixels, self.scale = min_size, skips, max_pixels, float(scale)
        self.bad: set[Path] = set()
        # FAST_NST_RECORD_SAMPLES=DIR: append "file-index crop-seed" per training item read to
        # DIR/rank<R>.txt (tests check that DDP ranks read disjoint shards and resumes re-read
        # the same items)
        self._record = os.environ.get("FAST_NST_RECORD_SAMPLES")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> torch.Tensor:
        idx, seed = key if isinstance(key, tuple) else (key, None)
        last_error = None
        for attempt in range(len(self.files)):
            path = self.files[(idx + attempt) % len(self.files)]
            if path in self.bad:
                continue
            try:
                x = load_crop(path, self.image_size, seed, self.decoder, self.min_size, self.max_pixels, self.scale)
            except ImageError as e:
                self.bad.add(path)
                last_error = e
                log.warning("skipping unusable image (%d so far in this process): %s", len(self.bad), e)
                if self.skips is not None:
                    self.skips.record(path, str(e))
                continue
            if self._record and seed is not None:
                self._write_record(idx, seed)
            return x
        example = f" (the last: {last_error})" if last_error else ""
        raise ImageError(f"none of the {len(self.files)} images of this set could be read{example}; "
                         "check the photos under data.root")

    def _write_record(self, idx: int, seed: int) -> None:
        d = Path(self._record)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"rank{dist_world()[1]}.txt", "a") as f:
            f.write(f"{idx} {seed}\n")


# how many skipped files a log message names before it points to the full list
NAMED_IN_LOG = 10


def describe_skips(skips: list[tuple[str, str]] | dict[str, str], limit: int = NAMED_IN_LOG) -> str:
    """One reason a line (each reason starts with its file's path), at most `limit` of them."""
    items = list(skips.items() if isinstance(skips, dict) else skips)
    lines = [f"  {reason}" for _, reason in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines)


class PhotoDataModule(pl.LightningDataModule):
    """`root`: a folder searched recursively for images. A fixed validation set is either
    `val_root` or `val_size` files held out by a seeded draw (same every run).

    Every argument is required: the defaults and their comments live in conf/data/bundled.yaml
    (the other data configs extend it); build one with `hydra.utils.instantiate(cfg.data, seed=...)`.
    Unusable files (unreadable, truncated, not an image, over `max_image_pixels` (decompression
    bombs among them), a short side under `min_image_size`) are skipped and recorded in `skip_log`, whether the header check at start
    (`check_images`) or the loader found them; `skipped` lists them as "path: reason".
    `fast_nst.training.data.report.SkippedImagesReport` reports them per epoch and to the logger.
    """

    def __init__(
        self,
        *,
        root: str,
        image_size: int,
        batch_size: int,
        num_workers: int,
        val_root: str | None,
        val_size: int,
        shuffle: bool,
        seed: int,
        check_images: bool,
        pin_memory: bool,
        persistent_workers: bool,
        drop_last: bool,
        prefetch_factor: int | None,
        decoder: str,
        min_image_size: int,
        max_image_pixels: int | None,
        photo_scale: float,
    ):
        super().__init__()
        if not float(photo_scale) >= 1.0:
            raise ConfigError(f"data.photo_scale={photo_scale}: needs >= 1 (the short side before cropping, in crop "
                              "sides; 1 = the whole short side)")
        self.save_hyperparameters(logger=False)
        self.train_set: PhotoDataset | None = None
        self.val_set: PhotoDataset | None = None
        self.skip_log: SkipLog | None = None

    @property
    def skipped(self) -> list[str]:
        """Every unusable file met so far (at start and while loading), as its reason."""
        return list(self.skip_log.reasons.values()) if self.skip_log is not None else []

    def _usable(self, files: list[Path], what: str, folder: Path) -> list[Path]:
        """`files` less those whose header is unusable (recorded and logged) when check_images."""
        if not self.hparams.check_images:
            return files
        good, bad = scan_images(files, self.hparams.min_image_size, self.hparams.max_image_pixels)
        for path, reason in bad:
            self.skip_log.record(path, reason)
        if bad:
            log.warning("skipping %d of %d %s image files under %s (unusable):\n%s", len(bad), len(files),
                        what, folder, describe_skips([(str(p), r) for p, r in bad]))
        return good

    def _listed(self, folder: Path, what: str) -> list[Path]:
        """`list_images(folder)`; what it could not list (broken or looping links, unreadable
        folders) is skipped and counted like an unusable photo."""
        problems: list[tuple[Path, str]] = []
        found = list_images(folder, problems=problems)
        for path, reason in problems:
            self.skip_log.record(path, reason)
        if problems:
            log.warning("skipping %d entries under %s that are not readable %s images:\n%s", len(problems), folder,
                        what, describe_skips([(str(p), r) for p, r in problems]))
        return found

    def _nothing_usable(self, key: str, folder: Path, found: int) -> ConfigError:
        return ConfigError(
            f"{key}: none of the {found} image files under {folder} is usable:\n"
            f"{describe_skips(self.skip_log.reasons)}\nFix or remove them, or point {key} at "
            "another folder")

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        root = resolve_path(hp.root)
        if not root.exists():
            raise MissingPathError(
                f"data.root={hp.root}: folder not found (looked in {root}). Point data.root at a "
                "folder of photos, or use data=coco after tools/download_coco.py")
        self.skip_log = SkipLog()
        found = self._listed(root, "training")
        if not found:
            raise ConfigError(f"data.root={hp.root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                             f"under {root} (searched recursively); point data.root at a folder of photos")
        files = self._usable(found, "training", root)
        if not files:
            raise self._nothing_usable("data.root", root, len(found))
        if hp.val_root:
            val_found = self._listed(resolve_path(hp.val_root), "validation")
            val = self._usable(val_found, "validation", resolve_path(hp.val_root))
            if not val:
                raise self._nothing_usable("data.val_root", resolve_path(hp.val_root), len(val_found))
            train = files
        else:
            order = torch.randperm(len(files), generator=torch.Generator().manual_seed(hp.seed)).tolist()
            k = min(hp.val_size, max(0, len(files) - hp.batch_size))
            val = sorted(files[i] for i in order[:k])
            train = [files[i] for i in sorted(order[k:])]
        if len(train) < (hp.batch_size if hp.drop_last else 1):
            skipped = f" ({len(self.skipped)} unusable files skipped)" if self.skipped else ""
            raise ConfigError(f"data.root={hp.root}: found {len(train)} usable training images{skipped}, "
                             f"fewer than data.batch_size={hp.batch_size}; add photos or lower the batch size")
        make = lambda fs: PhotoDataset(fs, hp.image_size, hp.decoder, hp.min_image_size, self.skip_log,  # noqa: E731
                                       hp.max_image_pixels, hp.photo_scale)
        self.train_set = make(train)
        self.val_set = make(val) if val else None
        self._require_one_readable(self.train_set, root, len(found))
        log.info("data: %d training and %d validation images from %s", len(train), len(val), root)

    def _require_one_readable(self, ds: PhotoDataset, root: Path, found: int) -> None:
        """Decode files until one works, so a folder of nothing usable fails here rather than at
        the first batch, even when every header passed (truncated files; normally one decode)."""
        try:
            ds[0]
        except ImageError:
            raise self._nothing_usable("data.root", root, found) from None

    def _loader_kwargs(self) -> dict:
        return loader_kwargs(self.hparams.num_workers, self.hparams.pin_memory,
                             self.hparams.persistent_workers, self.hparams.prefetch_factor)

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


def loader_throughput(files: list[Path] | str, image_size: int = 256, batch_size: int = 4,
                      num_workers: int = 0, decoder: str = "pil", images: int = 96,
                      warmup_batches: int = 2, prefetch_factor: int | None = 2, seed: int = 0) -> dict:
    """Images/s of the training loader alone (decode + resize + crop + collate), steady state.

    `files`: a list of image paths or a folder. Batches are drawn (epochs repeat as needed) until
    `images` have been timed after `warmup_batches` (which absorb worker start-up). Returns
    {"images_per_s", "images", "seconds", "decoder", "num_workers", "image_size", "batch_size"}.
    """
    if not isinstance(files, list):
        files = list_images(files)
    ds = PhotoDataset(files, image_size, decoder)
    sampler = EpochSampler(len(ds), seed=seed, num_replicas=1, rank=0)
    loader = ResumableLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=True,
                             **loader_kwargs(num_workers, False, True, prefetch_factor))
    want = warmup_batches + math.ceil(images / batch_size)
    seen, epoch = 0, 0
    t0 = time.perf_counter()  # reset after the warm-up batches
    while seen < want:
        sampler.set_epoch(epoch)
        for _ in loader:
            seen += 1
            if seen == warmup_batches:
                t0 = time.perf_counter()
            if seen >= want:
                break
        epoch += 1
    dt = time.perf_counter() - t0
    n = (want - warmup_batches) * batch_size
    return {"images_per_s": n / dt if dt > 0 else float("inf"), "images": n, "seconds": dt,
            "decoder": decoder, "num_workers": num_workers, "image_size": image_size,
            "batch_size": batch_size}
