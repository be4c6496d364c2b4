"""`optimize.py`: Gatys-style pixel optimisation of one photo, driven by conf/optimize/optimize.yaml."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fast_nst.stylize.color import luminance_image, recolour
from fast_nst.optimize.gatys import GatysObjective, initial_image, optimize_pixels
from fast_nst.io.errors import ConfigError, FastNSTError
from fast_nst.io.images import ImageError, load_rgb, pil_to_tensor, resolve_path, save_image_atomic, tensor_to_pil
from fast_nst.models.losses import PerceptualLoss
from fast_nst.io.paintings import locate_painting, resolve_painting
from fast_nst.stylize.stylizer import pick_device

log = logging.getLogger("fast_nst")
console = Console(stderr=True, soft_wrap=True)


def resolve_style(spec: str) -> Path:
    """A painting file, or the name of a bundled style (conf/style/<name>.yaml names its image)."""
    return locate_painting(resolve_painting(spec))


def _as_list(v) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, (list, tuple, ListConfig)) else [v]


def default_output(content: Path, styles: list[Path], preserve_color: bool) -> Path:
    tag = "+".join(s.stem for s in styles) + ("_colour" if preserve_color else "")
    return Path("outputs") / "optimize" / f"{content.stem}_{tag}.png"


def run(cfg: DictConfig) -> Path:
    """Raises ConfigError (exit 2) for bad options, found before any slow work, and FastNSTError
    (exit 1) for a photo or painting that cannot be read; anything else is a bug and keeps its
    traceback."""
    from fast_nst.weights.vgg import VGGWeightsError
    from fast_nst.io.validate import refuse_overwriting_inputs, validate_optimize

    validate_optimize(cfg)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    content_path = resolve_path(cfg.content)
    style_paths = [resolve_style(str(s)) for s in _as_list(cfg.style)]
    blend = [float(b) for b in _as_list(cfg.style_blend)] or None
    output = Path(cfg.output) if cfg.output else default_output(content_path, style_paths, cfg.preserve_color)
    refuse_overwriting_inputs([output], inputs=[content_path, *style_paths])  # before the VGG loads

    try:
        content = pil_to_tensor(load_rgb(content_path, cfg.image_size)).unsqueeze(0).to(device)
        if max(content.shape[-2:]) < cfg.image_size:
            log.info("content %s is smaller than image_size=%d; using its own size %s",
                     content_path, cfg.image_size, tuple(content.shape[-2:]))
        style_size = max(16, round(cfg.style_scale * max(content.shape[-2:])))
        styles = [pil_to_tensor(load_rgb(p, style_size)).unsqueeze(0).to(device) for p in style_paths]
    except ImageError as e:
        raise FastNSTError(str(e)) from e

    try:
        perceptual = PerceptualLoss.build(OmegaConf.to_container(cfg.loss, resolve=True),
                                          OmegaConf.to_container(cfg.loss_net, resolve=True)).to(device)
    except VGGWeightsError as e:  # the weights loss_net.weights names could not be had
        raise ConfigError(str(e)) from e
    encoder = perceptual.encoder
    target = content
    if cfg.preserve_color:
        # Luminance-only transfer: optimise a grey image against grey styles whose brightness
        # statistics match the photo, then put the photo's chroma back.
        target = luminance_image(content)
        styles = [luminance_image(s, like=content) for s in styles]
    perceptual.set_style(styles, blend)
    objective = GatysObjective(perceptual, target)
    gen = torch.Generator().manual_seed(cfg.seed)
    init = initial_image(cfg.init, target, styles[0], generator=gen)

    finish = (lambda img: recolour(img, content)) if cfg.preserve_color else (lambda img: img)

    console.print(f"[bold]optimize[/]: {content_path.name} x {', '.join(p.name for p in style_paths)} "
                  f"at {tuple(content.shape[-2:])}, {cfg.optimizer} x {cfg.iterations}, "
                  f"{encoder.arch} ({cfg.loss_net.weights}, {cfg.loss_net.pooling} pooling), device {device}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[terms]}"), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("optimizing", total=cfg.iterations, terms="")

        def callback(k: int, terms: dict[str, float], img: torch.Tensor) -> None:
            text = "  ".join(f"{n} {v:.4g}" for n, v in terms.items())
            bar.update(task, completed=min(k, cfg.iterations), terms=text)
            if cfg.log_every and k % cfg.log_every == 0:
                bar.console.print(f"iter {k:5d}/{cfg.iterations}  {text}")
            if cfg.save_every and k and k % cfg.save_every == 0 and k < cfg.iterations:
                snap = output.with_name(f"{output.stem}_iter{k:04d}{output.suffix}")
                save_image_atomic(tensor_to_pil(finish(img.clamp(0, 1))), snap)

        result = optimize_pixels(objective, init, optimizer=cfg.optimizer, iterations=cfg.iterations,
                                 lr=cfg.lr, lr_step=cfg.lr_step, lr_gamma=cfg.lr_gamma, callback=callback)
    save_image_atomic(tensor_to_pil(finish(result.image)), output)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    console.print(f"loss {first:.4g} -> {last:.4g} in {result.seconds:.1f} s "
                  f"({result.seconds / max(cfg.iterations, 1):.2f} s/iteration); wrote {output}")
    return output
