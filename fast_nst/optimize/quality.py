"""How many L-BFGS iterations of Gatys et al. does one forward pass of a trained network equal?

Johnson et al. 2016 (sec. 4.1, Fig. 5): evaluate the training objective (content + style + TV
against the network's own painting and loss network) on the network's output for a photo, then
optimise an image's pixels with projected L-BFGS on the same objective and note the first iteration
whose loss is at or below the network's. Their optimisation starts from white noise (`init=noise`:
the Caffe mean pixel plus N(0, 1) grey levels, clipped to the valid range after every iteration)
and they report 50 to 100 iterations at 256 px. Starting from the photo (`init=content`) begins
with zero content loss, so its counts are much smaller and not comparable with the paper's.

Besides the count, the report holds the network output's content, style and TV terms next to
L-BFGS's at fixed iterations (50, 100, 300 by default): stylization strength as numbers.

An L-BFGS curve depends only on the photo, the painting, the objective and the start image, not on
the network, so with a `cache_dir` each curve is computed once (over the whole budget) and reused:
evaluating every periodic checkpoint of a run (time to quality) costs one forward pass each.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fast_nst.training.data.decode import resize_crop
from fast_nst.io.export import ExportInfo, load_export, training_ingredients
from fast_nst.kinds import load_network
from fast_nst.optimize.gatys import GatysObjective, first_reaching, initial_image, optimize_pixels
from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
from fast_nst.io.files import atomic_write
from fast_nst.models.losses import PerceptualLoss

QUALITY_INITS = ("noise", "content")
TERMS = ("content", "style", "tv", "loss")


@dataclass
class LBFGSRun:
    """One photo's L-BFGS run from one start image."""
    init: str
    equivalent_iterations: int | None    # None: not reached within the iteration budget
    seconds_to_reach: float | None
    seconds_per_iteration: float
    start_terms: dict[str, float]          # the start image's {content, style, tv, loss}
    terms_at: dict[str, dict[str, float]]  # "50" -> {content, style, tv, loss} of iterate 50
    losses: list[float] = field(default_factory=list)


@dataclass
class PhotoResult:
    photo: str
    feedforward_terms: dict[str, float]   # the network output's weighted terms
    feedforward_seconds: float
    runs: dict[str, LBFGSRun] = field(default_factory=dict)

    @property
    def feedforward_loss(self) -> float:
        return self.feedforward_terms["loss"]


# Bump when the L-BFGS protocol changes (optimizer settings, start images): old cached curves then miss.
CURVE_PROTOCOL = 2   # 2: the loss network identified by its tensors


def _digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _tensor_digest(t: torch.Tensor) -> str:
    return _digest(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())


def training_objective(info, device: torch.device, style_image: str | None = None,
                       vgg_weights: str | None = None, style: str | None = None
                       ) -> tuple[PerceptualLoss, str, dict]:
    """The exact loss the exported network was trained against, rebuilt from its metadata
    (`info`: an ExportInfo; `style`: which painting of a multi-style network). Also returns what
    identifies that objective (loss settings, loss-network weights, the painting's pixels): the
    part of an L-BFGS curve's cache key that does not depend on the photo."""
    ing = training_ingredients(info, style=style, style_image=style_image)
    perceptual = PerceptualLoss.build(ing.loss, ing.loss_net, style_weight_scale=ing.style_weight_scale,
                                      weights=vgg_weights).to(device)
    style_img = pil_to_tensor(load_rgb(ing.painting_file, max_size=ing.loss.get("style_size")))
    perceptual.set_style([style_img.unsqueeze(0).to(device)])
    # The loss network by its tensors, not by how its weights were named: `oxford` (fetched) and a
    # local file of the same weights, as a run and its export may record them, share curves.
    vgg = hashlib.sha256()
    for t in perceptual.encoder.state_dict().values():
        vgg.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    identity = {"loss": dict(ing.loss), "loss_net": {k: v for k, v in dict(ing.loss_net).items() if k != "weights"},
                "style_weight_scale": ing.style_weight_scale, "vgg": vgg.hexdigest(),
                "painting": _tensor_digest(style_img)}
    return perceptual, str(ing.painting_file), identity


class CurveCache:
    """L-BFGS curves on disk, one JSON file per (objective, photo, start, budget), written atomically.
    A curve is reused only when it ran its whole budget, so it answers for any network."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder).expanduser() if folder else None

    def key(self, **parts) -> str:
        return _digest(json.dumps({"protocol": CURVE_PROTOCOL, **parts}, sort_keys=True, default=str))

    def get(self, key: str) -> dict | None:
        if self.folder is None:
            return None
        f = self.folder / f"{key}.json"
        try:
            return json.loads(f.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):   # a damaged entry is recomputed, not fatal
            return None

    def put(self, key: str, entry: dict) -> None:
        if self.folder is not None:
            atomic_write(self.folder / f"{key}.json", lambda tmp: tmp.write_text(json.dumps(entry)))


def load_lightning_checkpoint(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, ExportInfo, int | None]:
    """A periodic training checkpoint (`checkpoints/runs/<name>/step*.ckpt`) as (network, its
    metadata as an export's, global step), so quality can be tracked over training without
    exporting each one. The network is built as the run built it (its kind, paintings and, for
    add_style runs, `init_from`)."""
    from fast_nst.kinds import split_model_config
    from fast_nst.io.paintings import Painting

    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    hp = ckpt.get("hyper_parameters") or {}
    if "model" in hp and "style" in hp and "paintings" not in hp:
        # before network kinds: a per-style Johnson net, its painting under `style`
        hp = {**hp, "paintings": [{"weight": 1.0, **hp["style"]}], "model": {"kind": "johnson", **hp["model"]}}
    if "model" not in hp or "paintings" not in hp:
        raise ValueError(f"{path}: not a fast_nst training checkpoint of this version "
                         "(no model/paintings hyper-parameters)")
    kind, net_cfg = split_model_config(hp["model"])
    base = load_export(hp["init_from"]) if hp.get("init_from") else None
    net = kind.for_training(net_cfg, [Painting.from_dict(p) for p in hp["paintings"]], base)
    net.load_state_dict({k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    info = ExportInfo(kind=kind.kind, network=dict(net.config), styles=list(net.styles), loss=hp["loss"],
                      loss_net=hp["loss_net"], path=Path(path))
    return net.to(device).eval(), info, ckpt.get("global_step")


def load_for_quality(ckpt: str | Path, device: torch.device) -> tuple[torch.nn.Module, ExportInfo, int | None]:
    """(network, metadata, global step or None): an export, or a Lightning training checkpoint."""
    if Path(ckpt).suffix == ".ckpt":
        return load_lightning_checkpoint(ckpt, device)
    net, info = load_network(ckpt, device=device)
    return net, info, None


def trained_painting(net: torch.nn.Module) -> str | None:
    """The one painting a multi-style training checkpoint was training (a painting added to a
    network: warm_start=rows, experiment=add_style), else None."""
    names = getattr(net, "style_names", [])
    trained = net.training_style_indices() if hasattr(net, "training_style_indices") else []
    return names[trained[0]] if len(names) > 1 and len(trained) == 1 else None


def _terms(objective: GatysObjective, img: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        return {k: float(v) for k, v in objective(img).items()}


def evaluate(ckpt: str | Path, photos: list[Path], size: int, iterations: int,
             device: torch.device, inits: tuple[str, ...] = ("noise",),
             report_at: tuple[int, ...] = (50, 100, 300), style_image: str | None = None,
             vgg_weights: str | None = None, stop_early: bool = True, seed: int = 0,
             progress=None, style: str | None = None, cache_dir: str | Path | None = None) -> dict:
    """`inits`: start images to compare (noise = the paper's protocol, content = the photo).
    With `stop_early`, a photo's run ends once it has reached the network's loss *and* passed the
    last `report_at` iteration within the budget; otherwise the whole budget runs. `style`: which
    painting of a multi-style network (required there, except for a training checkpoint that adds
    one painting: that one); `style_image`: a painting file instead of the recorded one.
    `cache_dir`: reuse L-BFGS curves computed before (and store new ones, which then always run
    the whole budget)."""
    unknown = [i for i in inits if i not in QUALITY_INITS]
    if unknown or not inits:
        raise ValueError(f"init must be one or more of {QUALITY_INITS}, got {list(inits)}")
    net, info, global_step = load_for_quality(ckpt, device)
    style = style or trained_painting(net)
    perceptual, painting, objective_id = training_objective(info, device, style_image, vgg_weights, style)
    cache = CurveCache(cache_dir)
    cond = net.condition(style=style)
    report_at = tuple(sorted(k for k in set(report_at) if 0 < k <= iterations))
    results: list[PhotoResult] = []
    for i, path in enumerate(photos):
        photo = pil_to_tensor(resize_crop(load_rgb(path), size, None)).unsqueeze(0).to(device)
        objective = GatysObjective(perceptual, photo)
        with torch.inference_mode():
            net.stylize(photo, cond)  # warm-up, so the timing below is one steady-state pass
            t0 = time.perf_counter()
            out = net.stylize(photo, cond)
            if device.type == "cuda":
                torch.cuda.synchronize()
            ff_seconds = time.perf_counter() - t0
        result = PhotoResult(photo=str(path), feedforward_terms=_terms(objective, out.clone()),
                             feedforward_seconds=ff_seconds)
        ff_loss = result.feedforward_loss
        photo_id = _tensor_digest(photo)
        for init in inits:
            # The noise is seeded by the photo's pixels, not its place in the list: the same photo
            # gets the same start whichever photos are evaluated beside it (and its cached curve).
            noise_seed = seed * 7919 + int(photo_id[:8], 16)
            key = cache.key(objective=objective_id, photo=photo_id, size=size, init=init,
                            noise_seed=noise_seed, iterations=iterations)
            cached = cache.get(key)
            if cached is None:
                cached = _lbfgs_curve(objective, photo, init, noise_seed, iterations, report_at, ff_loss,
                                      stop_early and cache.folder is None,
                                      None if progress is None else (lambda k, loss, init=init: progress(i, init, k, loss, ff_loss)))
                if len(cached["history"]) == iterations + 1:
                    cache.put(key, cached)
            history, stamps = cached["history"], cached["stamps"]
            losses = [h["loss"] for h in history]
            k = first_reaching(losses, ff_loss)
            result.runs[init] = LBFGSRun(
                init=init, equivalent_iterations=k, seconds_to_reach=stamps[k] if k is not None else None,
                seconds_per_iteration=cached["seconds"] / max(len(losses) - 1, 1),
                start_terms=history[0], terms_at={str(j): history[j] for j in report_at if j < len(history)},
                losses=losses)
        results.append(result)
    return {
        "ckpt": str(ckpt), "style": style or info.style_names[0], "painting": painting, "size": size,
        "max_iterations": iterations, "report_at": list(report_at), "device": str(device),
        "vgg_weights": perceptual.encoder.weights_source, "global_step": global_step,
        "summary": summarize(results, inits, report_at),
        "per_photo": [_photo_dict(r) for r in results],
    }


def _lbfgs_curve(objective: GatysObjective, photo: torch.Tensor, init: str, noise_seed: int, iterations: int,
                 report_at: tuple[int, ...], ff_loss: float, stop_early: bool, progress) -> dict:
    """One projected L-BFGS run (projection for the noise start, the paper's protocol): every
    iterate's terms and the seconds at which each was evaluated."""
    start_img = initial_image(init, photo, generator=torch.Generator().manual_seed(noise_seed))
    stamps: list[float] = []
    history: list[dict[str, float]] = []
    start = time.perf_counter()

    def callback(k, terms, img):
        stamps.append(time.perf_counter() - start)
        history.append(terms)
        if progress is not None:
            progress(k, terms["loss"])

    def done() -> bool:
        k = len(history) - 1
        return (stop_early and first_reaching([h["loss"] for h in history], ff_loss) is not None
                and k >= (report_at[-1] if report_at else 0))

    run = optimize_pixels(objective, start_img, "lbfgs", iterations, lr=1.0, callback=callback,
                          project=(init == "noise"), stop_when=done)
    return {"history": history, "stamps": stamps, "seconds": run.seconds}


def _photo_dict(r: PhotoResult) -> dict:
    return {"photo": r.photo, "feedforward_terms": r.feedforward_terms,
            "feedforward_loss": r.feedforward_loss, "feedforward_seconds": r.feedforward_seconds,
            "runs": {k: asdict(v) for k, v in r.runs.items()}}


def _mean_terms(rows: list[dict[str, float]]) -> dict[str, float] | None:
    return {t: statistics.fmean(r[t] for r in rows) for t in TERMS} if rows else None


def summarize(results: list[PhotoResult], inits, report_at) -> dict:
    """Per start image: median/mean equivalent iterations over the photos that reached the network's
    loss, and mean terms of the network and of L-BFGS at each `report_at` iteration."""
    out = {"photos": len(results),
           "feedforward_seconds_per_image": statistics.median(r.feedforward_seconds for r in results),
           "feedforward_terms": _mean_terms([r.feedforward_terms for r in results]), "init": {}}
    for init in inits:
        runs = [r.runs[init] for r in results]
        reached = [x.equivalent_iterations for x in runs if x.equivalent_iterations is not None]
        out["init"][init] = {
            "reached": len(reached),
            "median_equivalent_iterations": statistics.median(reached) if reached else None,
            "mean_equivalent_iterations": statistics.fmean(reached) if reached else None,
            "per_photo_equivalent_iterations": [x.equivalent_iterations for x in runs],
            "lbfgs_seconds_per_iteration": statistics.median(x.seconds_per_iteration for x in runs),
            "lbfgs_terms_at": {str(j): _mean_terms([x.terms_at[str(j)] for x in runs if str(j) in x.terms_at])
                               for j in report_at},
        }
    return out


def plot(report: dict, path: Path) -> Path | None:
    """One panel per start image: every photo's L-BFGS loss divided by its network's loss (the
    dashed line at 1 is the network; where a curve crosses it is the equivalent iteration).
    None without matplotlib (the `plots` extra): quality.json holds every number anyway."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits = list(report["summary"]["init"])
    fig, axes = plt.subplots(1, len(inits), figsize=(5.5 * len(inits), 4), squeeze=False)
    for ax, init in zip(axes[0], inits):
        for r in report["per_photo"]:
            ff, losses = r["feedforward_loss"], r["runs"][init]["losses"]
            ax.plot(range(len(losses)), [v / ff for v in losses], lw=1, alpha=0.7)
        s = report["summary"]["init"][init]
        ax.axhline(1.0, color="k", ls="--", label="feed-forward network")
        med = s["median_equivalent_iterations"]
        if med is not None:
            ax.axvline(med, color="gray", ls=":", lw=1, label=f"median: {med:g} iterations")
        ax.set(yscale="log", xlabel="L-BFGS iteration", ylabel="loss / network's loss",
               title=f"{report['style']}, start: {init} ({report['summary']['photos']} photos, "
                     f"{report['size']} px)")
        ax.legend()
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)


def write_json(report: dict, path: Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(report, indent=1)))


def pick_photos(folder: str | Path, k: int) -> list[Path]:
    files = list_images(folder)
    if not files:
        raise FileNotFoundError(f"photos={folder}: no images found (looked for .jpg/.png/... recursively)")
    # evenly spaced over the sorted list: deterministic and not just the first sub-folder
    step = max(1, len(files) // k) if k else 1
    return files[::step][:k] if k else files
