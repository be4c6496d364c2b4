"""Training photos: any folder of images (recursive), COCO, or the bundled free-licence set.

Data order is a pure function of (seed, epoch), and each crop of (seed, epoch, position), so a
resumed run (`ckpt_path=last`) sees exactly the batches the uninterrupted run would have seen.
Under DDP every rank takes its own slice of each epoch's order (`EpochSampler` shards itself, so
Lightning never wraps it).

Photos are decoded either with PIL or with torchvision.io (libjpeg-turbo / libpng straight into a
uint8 tensor, then an antialiased tensor resize): `decoder` in conf/data/*.yaml; measure with
`python benchmarks/bench_data.py` or `loader_throughput()`.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import signal
import time
import warnings
from pathlib import Path
from typing import Iterator

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.io.images import (IMAGE_EXTENSIONS, WHITE, ImageError, ImageHeader, PixelLimit, list_images,
                             load_rgb, pil_to_tensor, read_header, resolve_path)

DECODERS = ("pil", "torchvision")

log = logging.getLogger("fast_nst")


def resize_crop(im: Image.Image, size: int, rng: random.Random | None, scale: float = 1.0) -> Image.Image:
    """Scale the short side to `size` x `scale`, then crop size x size (random with `rng`, else centred)."""
    w, h, x, y = _crop_box(im.width, im.height, size, rng, scale)
    im = im.resize((w, h), Image.BILINEAR, reducing_gap=3.0)
    return im.crop((x, y, x + size, y + size))


def _crop_box(w: int, h: int, size: int, rng: random.Random | None, scale: float = 1.0) -> tuple[int, int, int, int]:
    """Scaled (w, h) with the short side = size x scale, and the crop's top-left (random with `rng`)."""
    short = max(size, round(size * scale))
    s = short / min(w, h)
    w, h = max(short, round(w * s)), max(short, round(h * s))
    x = rng.randint(0, w - size) if rng else (w - size) // 2
    y = rng.randint(0, h - size) if rng else (h - size) // 2
    return w, h, x, y


def _tv_decode(path: Path) -> torch.Tensor:
    """torchvision.io decode to a (3, H, W) uint8 tensor, EXIF rotation applied; raises on bad data."""
    from torchvision.io import ImageReadMode, decode_image

    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 flags its image codecs as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        x = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    if x.dtype != torch.uint8 or x.dim() != 3:
        raise ValueError(f"{path}: {x.dtype} image of shape {tuple(x.shape)}")
    return x


def _torchvision_reads(h: ImageHeader) -> bool:
    """Plain JPEG and WebP stills, which torchvision.io decodes to the same pixels as PIL.

    Not PNG: torchvision 0.29's PNG decoder crashes the process (SIGSEGV, not an exception) on a
    PNG whose compressed data is damaged, about a third of the damaged PNGs in our fuzzing, and a
    crash in a DataLoader worker ends the run (JPEG and WebP: none in 1500 damaged files each).
    Not alpha or animations either: its RGB mode drops alpha (showing whatever colour hides under
    transparent pixels) and decodes every frame. Those, palettes, 16-bit and the other formats go
    through PIL."""
    return (h.format in ("JPEG", "WEBP") and h.mode in ("RGB", "L", "CMYK")
            and not h.transparency and h.frames == 1)


def tv_resize_crop(x: torch.Tensor, size: int, rng: random.Random | None, scale: float = 1.0) -> torch.Tensor:
    """`resize_crop` for a (3, H, W) uint8 tensor: antialiased bilinear resize, then the crop."""
    w, h, cx, cy = _crop_box(x.shape[-1], x.shape[-2], size, rng, scale)
    if (h, w) != tuple(x.shape[-2:]):
        x = torch.nn.functional.interpolate(x[None], size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False)[0]
    return x[:, cy:cy + size, cx:cx + size]


def pixel_limit(max_pixels: int | None) -> PixelLimit | None:
    """data.max_image_pixels as the PixelLimit of a training photo (None: PIL's own bomb check)."""
    if max_pixels is None:
        return None
    return PixelLimit(max_pixels, "data.max_image_pixels", "or downscale the photo: training crops are "
                      "data.image_size px, so a smaller copy trains the same")


def load_crop(path: Path, size: int, seed: int | None, decoder: str = "pil",
              min_size: int = 1, max_pixels: int | None = None, scale: float = 1.0) -> torch.Tensor:
    """One training/validation crop as float (3, size, size) in [0, 1]; ImageError if unusable.
    `scale`: the short side is resized to size x scale before cropping (data.photo_scale).

    The header is checked first (readable, a supported format, not a decompression bomb, short
    side >= `min_size`, at most `max_pixels` pixels), so no decoder ever allocates a bomb's pixels. The picture is the one a
    viewer shows: EXIF rotation applied, transparency over white, 16-bit scaled by 65535, CMYK and
    palettes in RGB, the first frame of an animation. With decoder="torchvision", plain 8-bit
    JPEG/WebP stills go through torchvision.io and everything else, or anything it fails on,
    through PIL.
    """
    header = read_header(path, min_size, pixel_limit(max_pixels))
    if decoder == "torchvision" and _torchvision_reads(header):
        try:
            x = tv_resize_crop(_tv_decode(header.path), size, random.Random(seed) if seed is not None else None,
                               scale)
            return x.float().div_(255.0)
        except (RuntimeError, ValueError, OSError):
            pass  # PIL either reads it or raises the ImageError that names the problem
    rng = random.Random(seed) if seed is not None else None
    return pil_to_tensor(resize_crop(load_rgb(header.path, background=WHITE, limit=pixel_limit(max_pixels)),
                                     size, rng, scale))


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
        with open(d / f"rank{_dist_world()[1]}.txt", "a") as f:
            f.write(f"{idx} {seed}\n")


def _dist_world() -> tuple[int, int]:
    """(world size, rank) of the initialised torch.distributed group, else (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochSampler(DistributedSampler):
    """Seeded permutation per epoch that can start part-way through (for exact resume), sharded
    over the ranks of a DDP run.

    Every rank draws the same global order for (seed, epoch), pads it to a multiple of the world
    size by repeating its head (like DistributedSampler), and keeps positions rank, rank + world,
    ...: disjoint shards of equal length, so all ranks run the same number of steps. With one
    process the order is exactly that of a non-distributed run. `num_replicas`/`rank` default to
    the initialised torch.distributed group (Lightning creates the train loader after joining it).

    It subclasses DistributedSampler only so that Lightning sees it shards itself and does not
    wrap it (a wrapper would hide `epoch`/`start`, which exact resume needs); it shares no code.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None):
        # no DistributedSampler.__init__: it wants a dataset and an initialised process group
        world, r = _dist_world()
        self.num_replicas = world if num_replicas is None else num_replicas
        self.rank = r if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} outside world size {self.num_replicas}")
        self.n, self.seed, self.shuffle, self.drop_last = n, seed, shuffle, False
        self.total_size = math.ceil(n / self.num_replicas) * self.num_replicas
        self.num_samples = self.total_size // self.num_replicas
        self.epoch, self.start = 0, 0  # start: positions of this rank's shard to skip (resume)

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        crops = torch.randint(0, 2**31 - 1, (self.n,), generator=g)
        pad = self.total_size - self.n
        if pad:  # drawn after the unpadded order, so one process matches a non-distributed run
            order = torch.cat([order, order.repeat(math.ceil(pad / self.n))[:pad]])
            crops = torch.cat([crops, torch.randint(0, 2**31 - 1, (pad,), generator=g)])
        start, self.start = self.start, 0
        for k in range(self.rank + start * self.num_replicas, self.total_size, self.num_replicas):
            yield int(order[k]), int(crops[k])


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning checkpoints (it calls state_dict/load_state_dict on loaders
    that have them) as (epoch, batches handed out per rank, world size). Under DDP all ranks hand
    out the same number of batches, so rank zero's state (the one saved) is everyone's; resuming
    with another world size keeps the epoch and the fraction of it already done (not exact)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._served = 0

    def __iter__(self):
        self._served = self.sampler.start // self.batch_size  # batches skipped on resume count as served
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self._served,
                "world_size": self.sampler.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        epoch = state["epoch"]
        batches = state["batches"] * state.get("world_size", 1) // self.sampler.num_replicas
        if batches >= len(self):
            # A checkpoint of an epoch's last batch: Lightning resumes it at the next epoch, but
            # creates this loader's iterator (and draws its first batch) in FitLoop.setup_data,
            # before on_advance_start calls set_epoch. Left at (epoch, start=all), that iterator
            # is empty: the resumed run spent Lightning's next epoch on zero batches and read the
            # order of the epoch after it (tests/test_killed_runs.py, resumed from step 4)
            epoch, batches = epoch + 1, 0
        self.sampler.epoch = epoch
        self.sampler.start = batches * self.batch_size


def worker_init(worker_id: int) -> None:
    """Every loader worker ignores SIGINT and SIGTERM: Ctrl-C reaches the whole process group and a
    scheduler may signal every process, and a worker killed by either ends the run ("DataLoader
    worker exited unexpectedly") before the main process has saved last.ckpt
    (fast_nst.training.guards.StopOnSignal). Workers still exit with the main process. Lightning's seeding of
    workers (seed_everything(workers=True), which it only adds when a loader has no init function
    of its own) is kept."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def loader_kwargs(num_workers: int, pin_memory: bool = True, persistent_workers: bool = True,
                  prefetch_factor: int | None = 2) -> dict:
    """DataLoader speed options; those that only mean something with workers or CUDA are dropped
    otherwise (PyTorch rejects prefetch_factor without workers, pinning without CUDA is a no-op).
    Workers start with `worker_init`."""
    kw = dict(num_workers=num_workers, pin_memory=bool(pin_memory) and torch.cuda.is_available())
    if num_workers > 0:
        kw.update(persistent_workers=bool(persistent_workers), prefetch_factor=prefetch_factor,
                  worker_init_fn=worker_init)
    return kw


def scan_images(files: list[Path], min_size: int = 1,
                max_pixels: int | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Header check of every file (`read_header`: PIL reads only the header, about a millisecond
    a file). Returns (usable files, [(unusable file, reason)]). A truncated file passes: only
    decoding finds it, and the loader then skips it."""
    good, bad = [], []
    for p in files:
        try:
            read_header(p, min_size, pixel_limit(max_pixels))
            good.append(p)
        except ImageError as e:
            bad.append((p, str(e)))
    return good, bad


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
