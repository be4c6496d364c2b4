"""How many L-BFGS iterations of Gatys et al. does one forward pass of a trained network equal?

Johnson et al. 2016, Fig. 5: evaluate the training objective (content + style + TV against the
network's own painting and loss network) on the network's output for a photo, then optimise the
photo's pixels with L-BFGS on the same objective, starting from the photo, and note the first
iteration whose loss is at or below the network's. Small numbers mean the network is far from what
optimisation reaches; Johnson et al. report 50 to 100 at 256 px.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fast_nst.data import resize_crop
from fast_nst.export import load_network, training_ingredients
from fast_nst.gatys import GatysObjective, first_reaching, optimize_pixels
from fast_nst.images import atomic_write, list_images, load_rgb, pil_to_tensor
from fast_nst.losses import PerceptualLoss


@dataclass
class PhotoResult:
    photo: str
    feedforward_loss: float
    feedforward_seconds: float
    equivalent_iterations: int | None    # None: not reached within the iteration budget
    lbfgs_seconds_to_reach: float | None
    lbfgs_seconds_per_iteration: float
    lbfgs_losses: list[float] = field(default_factory=list)


def training_objective(info, device: torch.device, style_image: str | None = None,
                       vgg_weights: str | None = None, style: str | None = None) -> tuple[PerceptualLoss, str]:
    """The exact loss the exported network was trained against, rebuilt from its metadata
    (`info`: an ExportInfo; `style`: which painting of a multi-style network)."""
    ing = training_ingredients(info, style=style, style_image=style_image)
    perceptual = PerceptualLoss.build(ing.loss, ing.loss_net, style_weight_scale=ing.style_weight_scale,
                                      weights=vgg_weights).to(device)
    style_img = pil_to_tensor(load_rgb(ing.painting_file, max_size=ing.loss.get("style_size")))
    perceptual.set_style([style_img.unsqueeze(0).to(device)])
    return perceptual, str(ing.painting_file)


def evaluate(ckpt: str | Path, photos: list[Path], size: int, iterations: int,
             device: torch.device, style_image: str | None = None, vgg_weights: str | None = None,
             stop_early: bool = True, progress=None, style: str | None = None) -> dict:
    net, info = load_network(ckpt, device=device)
    perceptual, painting = training_objective(info, device, style_image, vgg_weights, style)
    cond = net.condition(style=style)
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
        with torch.no_grad():
            ff_loss = float(objective(out.clone())["loss"])
        stamps: list[float] = []
        start = time.perf_counter()

        def callback(k, terms, img):
            stamps.append(time.perf_counter() - start)
            if progress is not None:
                progress(i, k, terms["loss"], ff_loss)

        run = optimize_pixels(objective, photo, "lbfgs", iterations, lr=1.0, callback=callback,
                              stop_below=ff_loss if stop_early else None)
        k = first_reaching(run.losses, ff_loss)
        n_steps = max(len(run.losses) - 1, 1)
        results.append(PhotoResult(
            photo=str(path), feedforward_loss=ff_loss, feedforward_seconds=ff_seconds,
            equivalent_iterations=k, lbfgs_seconds_to_reach=stamps[k] if k is not None else None,
            lbfgs_seconds_per_iteration=run.seconds / n_steps, lbfgs_losses=run.losses))
    reached = [r.equivalent_iterations for r in results if r.equivalent_iterations is not None]
    summary = {
        "photos": len(results),
        "reached": len(reached),
        "median_equivalent_iterations": statistics.median(reached) if reached else None,
        "mean_equivalent_iterations": statistics.fmean(reached) if reached else None,
        "feedforward_seconds_per_image": statistics.median(r.feedforward_seconds for r in results),
        "lbfgs_seconds_per_iteration": statistics.median(r.lbfgs_seconds_per_iteration for r in results),
        "lbfgs_seconds_to_reach_per_image": (statistics.median(r.lbfgs_seconds_to_reach for r in results
                                                               if r.lbfgs_seconds_to_reach is not None)
                                             if reached else None),
    }
    return {
        "ckpt": str(ckpt), "style": style or info.style_names[0], "painting": painting, "size": size,
        "max_iterations": iterations, "device": str(device), "vgg_weights": perceptual.encoder.weights_source,
        "summary": summary, "per_photo": [asdict(r) for r in results],
    }


def plot(report: dict, path: Path) -> Path:
    """Left: every photo's L-BFGS loss divided by its network's loss (the line at 1 is the network).
    Right: the first photo's raw curve with its network loss as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in report["per_photo"]:
        ff = r["feedforward_loss"]
        ax1.plot(range(len(r["lbfgs_losses"])), [v / ff for v in r["lbfgs_losses"]], lw=1, alpha=0.7)
    ax1.axhline(1.0, color="k", ls="--", label="feed-forward network")
    ax1.set(yscale="log", xlabel="L-BFGS iteration", ylabel="loss / network's loss",
            title=f"{report['style']}: {report['summary']['photos']} photos at {report['size']} px")
    ax1.legend()
    r = report["per_photo"][0]
    ax2.plot(r["lbfgs_losses"], label="L-BFGS from the photo")
    ax2.axhline(r["feedforward_loss"], color="k", ls="--", label="feed-forward network")
    if r["equivalent_iterations"] is not None:
        ax2.axvline(r["equivalent_iterations"], color="gray", ls=":", lw=1)
    ax2.set(yscale="log", xlabel="L-BFGS iteration", ylabel="training objective",
            title=Path(r["photo"]).name)
    ax2.legend()
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

