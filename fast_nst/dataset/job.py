"""The dataset job: plan every image, run `StylizeWorker` actors over them with Ray Data, keep the
manifest and the progress bar, and report.

    ray.data.from_items(rows).map_batches(StylizeWorker, concurrency=actors, ...)

Ray starts inside this process (one machine, loopback only) unless `ray_address` names a cluster
to join (`auto`: the one `ray start` made on this machine; `ray://HOST:10001`: a remote one).
On a cluster every node must see input=, output= and paintings= at the same paths (a shared
file system). Ray restarts an actor that died and retries its batch; images of that batch
already written are found done and skipped, so none is written twice.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fast_nst.dataset.manifest import MANIFEST_NAME, ManifestLog, compact
from fast_nst.dataset.plan import FORMATS, Item, plan, remove_stale_temporaries
from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.io.images import IMAGE_EXTENSIONS, list_images, resolve_path

console = Console(stderr=True)
log = logging.getLogger("fast_nst")


@dataclass
class Summary:
    """What a job did, by status (this run's rows), with its wall time and rate."""
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    manifest: Path | None = None

    @property
    def written(self) -> int:
        return self.counts.get("ok", 0)

    @property
    def images_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"stylize-dataset runs on Ray Data, which is not installed ({e}); "
                          "install it with: pip install -e '.[scale]'  (or pip install 'ray[data]')") from None
    return ray


def model_paintings(cfg, stylizer) -> tuple[bool, list[str], str]:
    """(arbitrary, what each image's painting is drawn from, a description). Any-painting kinds
    draw painting files from paintings=; the others draw among the network's own paintings."""
    arbitrary = bool(getattr(stylizer.net, "arbitrary_style", False))
    if not arbitrary:
        if cfg.paintings:
            raise ConfigError(f"paintings={cfg.paintings}: ckpt={cfg.ckpt} is a {stylizer.kind} network and paints only "
                              f"its own painting(s) ({', '.join(stylizer.styles)}); drop paintings=, or use an "
                              "any-painting kind such as ckpt=magenta or ckpt=adain")
        return False, list(stylizer.styles), f"its own painting(s): {', '.join(stylizer.styles)}"
    if not cfg.paintings:
        raise ConfigError(f"ckpt={cfg.ckpt} takes any painting: add paintings=DIR, a folder of paintings "
                          "(each image gets one, drawn by seed= and its path)")
    folder = resolve_path(str(cfg.paintings)).resolve()
    if not folder.is_dir():
        raise MissingPathError(f"paintings={cfg.paintings}: no such folder (looked in {folder}); give a folder of paintings")
    files = [str(p) for p in list_images(folder)]
    if not files:
        raise MissingPathError(f"paintings={cfg.paintings}: no images in it (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return True, files, f"{len(files)} paintings from {folder}"


def check_options(cfg) -> tuple[Path, Path]:
    """(input folder, output folder), or a ConfigError naming the option, before anything loads."""
    from fast_nst.io.validate import refuse_overwriting_inputs, validate_dataset

    validate_dataset(cfg, FORMATS)
    src, dst = Path(str(cfg.input)).expanduser().absolute(), Path(str(cfg.output)).expanduser().absolute()
    if not src.is_dir():
        raise MissingPathError(f"input={cfg.input}: {'not a folder' if src.exists() else 'no such folder'}; "
                               "give the folder of images to stylize (searched recursively)")
    # outputs mirror the input tree: inside it (or the paintings), a rerun would stylize them again
    scanned = [src] + ([resolve_path(str(cfg.paintings))] if cfg.paintings else [])
    refuse_overwriting_inputs([Path(str(cfg.output)).expanduser()], folders=scanned,
                              fix="choose an output folder outside input= and paintings=")
    return src, dst


def start_ray(cfg) -> bool:
    """Connects to Ray; returns True when this call started it (and so shuts it down after)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    kw = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    if cfg.ray_address:
        ray.init(address=str(cfg.ray_address), **kw)
    else:
        # logical CPUs: the pool's actors plus one for Ray Data's own work (with every CPU held by
        # an actor, Ray Data waits for resources and the pool never fills)
        cpus = cfg.num_cpus or max(os.cpu_count() or 1, pool_size(cfg, local=True) * cfg.threads) + 1
        # address="local": always a new Ray of our own (a bare ray.init() would join any cluster
        # `ray start` left running on this machine)
        for attempt in (1, 2, 3):
            try:
                ray.init(address="local", num_cpus=int(cpus), object_store_memory=int(cfg.object_store_mb) * 2**20,
                         _node_ip_address="127.0.0.1", **kw)
                break
            except Exception as e:  # Ray gives its raylet a fixed 30 s to register, too short on a busy machine
                if "timed out during startup" not in str(e) or attempt == 3:
                    raise
                console.print(f"Ray's node did not start within Ray's 30 s (a busy machine?); trying again ({attempt + 1}/3)")
                ray.shutdown()
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts images, with images/s and the time left
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return True


def pool_size(cfg, local: bool) -> int:
    """actors=, or as many as this machine's CPUs hold at threads= each (local), or the cluster's
    CPUs less one (GPUs at gpus= each)."""
    if cfg.actors:
        return int(cfg.actors)
    if local and not cfg.gpus:
        return max(1, (os.cpu_count() or 1) // max(1, cfg.threads))
    resources = _ray().cluster_resources()
    if cfg.gpus:
        return max(1, int(resources.get("GPU", 0) // cfg.gpus))
    return max(1, int(resources.get("CPU", 2) - 1) // max(1, cfg.threads))


class JobProgress:
    """A live bar (images, images/s, time left) in a terminal; otherwise a plain line every
    `every_s` seconds and at the end."""

    def __init__(self, total: int, every_s: float, console: Console = console):
        self.total, self.every_s, self.console = total, every_s, console
        self.done = self.written = 0
        self.start = self.last_line = time.perf_counter()
        self.live = console.is_terminal
        columns = (TextColumn("stylizing"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:.2f} images/s"), TimeElapsedColumn(), TextColumn("left"),
                   TimeRemainingColumn())
        self.progress = Progress(*columns, console=console, disable=not self.live)
        self.task = self.progress.add_task("stylizing", total=total, rate=0.0)

    def __enter__(self) -> "JobProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)
        if not self.live:
            self.line()

    @property
    def rate(self) -> float:
        return self.written / max(1e-9, time.perf_counter() - self.start)

    def eta(self) -> str:
        from fast_nst.training.progress import format_duration

        left = self.total - self.done
        return format_duration(left / self.rate) if self.rate > 0 else "?"

    def line(self) -> None:
        self.console.print(f"stylizing {self.done}/{self.total} images, {self.rate:.2f} images/s, "
                           f"{self.eta()} left")
        self.last_line = time.perf_counter()

    def advance(self, rows: list[dict]) -> None:
        self.done += len(rows)
        self.written += sum(r["status"] == "ok" for r in rows)
        self.progress.update(self.task, completed=self.done, rate=self.rate)
        if not self.live and time.perf_counter() - self.last_line >= self.every_s:
            self.line()


def _rows(batch: dict, output_dir: Path, paintings_dir: Path | None) -> list[dict]:
    """A result batch as manifest rows, with output (and painting files) relative to their folders."""
    keys = list(batch)
    rows = [{k: str(batch[k][i]) for k in keys} for i in range(len(batch[keys[0]]))] if keys else []
    for r in rows:
        r["output"] = os.path.relpath(r["output"], output_dir)
        if paintings_dir is not None:
            r["painting"] = os.path.relpath(r["painting"], paintings_dir)
    return rows


def run_job(cfg, worker_cls: type | None = None) -> Summary:
    """The whole job (see the module docstring). `worker_cls`: the actor class (StylizeWorker or
    a subclass; tests use one that dies once)."""
    from fast_nst.dataset.worker import StylizeWorker
    from fast_nst.stylize.stylizer import Stylizer

    src, dst = check_options(cfg)
    _ray()  # installed? (before the network and the folder scan)
    unlisted: list[tuple[Path, str]] = []  # broken links, unreadable folders: listed, not fatal
    files = list_images(src, problems=unlisted)
    if not files:
        raise MissingPathError(f"input={cfg.input}: no images found (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    stylizer = Stylizer.load(str(cfg.ckpt), device="cpu")  # the kind and its paintings; checks ckpt= here
    arbitrary, paintings, drawn = model_paintings(cfg, stylizer)
    model = stylizer.name
    del stylizer
    items = plan(files, src, dst, str(cfg.format), paintings, int(cfg.seed))  # absolute paths: workers may be elsewhere
    stale = remove_stale_temporaries(dst)
    manifest_path = dst / MANIFEST_NAME
    started = start_ray(cfg)
    try:
        actors = pool_size(cfg, local=not cfg.ray_address)
        device = str(cfg.device) if cfg.device != "auto" else ("cuda" if cfg.gpus else "cpu")
        where = f"cluster {cfg.ray_address}" if cfg.ray_address else "this machine (Ray in-process)"
        console.print(f"[bold]{model}[/] on {len(items)} images from {src} to {dst}; paintings: {drawn}; "
                      f"{actors} actor(s) x {cfg.threads} thread(s){f' x {cfg.gpus} GPU' if cfg.gpus else ''} "
                      f"on {where}" + (f"; removed {stale} temporary file(s) of a killed run" if stale else ""),
                      soft_wrap=True)
        unreadable = [{"image": os.path.relpath(p, src), "output": "", "painting": "", "model": model, "seconds": "",
                       "status": "unreadable", "worker": "listing", "error": reason} for p, reason in unlisted]
        summary = _execute(cfg, items, manifest_path, worker_cls or StylizeWorker, arbitrary, actors, device,
                           resolve_path(str(cfg.paintings)).resolve() if arbitrary else None, unreadable)
    finally:
        if started:
            _ray().shutdown()
    summary.manifest = manifest_path
    return summary


def _execute(cfg, items: list[Item], manifest_path: Path, worker_cls: type, arbitrary: bool,
             actors: int, device: str, paintings_dir: Path | None, unlisted: list[dict]) -> Summary:
    import ray.data

    blocks = min(len(items), max(4 * actors, math.ceil(len(items) / 256)))
    ds = ray.data.from_items([it.row() for it in items], override_num_blocks=blocks)
    worker_kwargs = dict(device=device, threads=int(cfg.threads), strength=float(cfg.strength),
                         max_size=cfg.max_size, max_pixels=cfg.max_pixels, style_size=cfg.style_size,
                         quality=int(cfg.quality))
    # Ray Data gives pool actors max_restarts=-1 and max_task_retries=-1: an actor that dies is
    # started again and its batch retried (tests/test_stylize_dataset.py kills one)
    out = ds.map_batches(worker_cls, fn_constructor_args=(str(cfg.ckpt), arbitrary),
                         fn_constructor_kwargs=worker_kwargs, batch_size=int(cfg.batch_size),
                         compute=ray.data.ActorPoolStrategy(size=actors),
                         num_cpus=max(1, int(cfg.threads)) if not cfg.gpus else 1, num_gpus=float(cfg.gpus) or None)
    summary = Summary(total=len(items), counts={"unreadable": len(unlisted)} if unlisted else {})
    log_file = ManifestLog(manifest_path)
    log_file.write(unlisted)
    for r in unlisted:
        console.print(f"[red]unreadable[/] {r['error']}", soft_wrap=True)
    start = time.perf_counter()
    try:
        with JobProgress(len(items), float(cfg.progress_every_s)) as progress:
            for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
                rows = _rows(batch, manifest_path.parent, paintings_dir)
                log_file.write(rows)
                progress.advance(rows)
                for r in rows:
                    summary.counts[r["status"]] = summary.counts.get(r["status"], 0) + 1
                    if r["status"] in ("unreadable", "failed"):
                        console.print(f"[red]{r['status']}[/] {r['error']}", soft_wrap=True)
    finally:
        log_file.close()
        summary.seconds = time.perf_counter() - start
        compact(manifest_path, [it.image for it in items])
    return summary


def run(cfg) -> int:
    """The CLI's body: returns how many images failed (unreadable inputs are listed, not counted)."""
    s = run_job(cfg)
    c = s.counts
    console.print(f"wrote {c.get('ok', 0)} image(s) in {s.seconds:.1f} s ({s.images_per_s:.2f} images/s); "
                  f"{c.get('skipped', 0)} already done, {c.get('unreadable', 0)} unreadable input(s), "
                  f"{c.get('failed', 0)} failed; manifest: {s.manifest}", soft_wrap=True)
    if c.get("failed"):
        console.print(f"[red]{c['failed']} image(s) failed[/] (status=failed in the manifest); "
                      "run the same command again to retry them")
    return c.get("failed", 0)


__all__ = ["run_job", "run", "Summary"]
