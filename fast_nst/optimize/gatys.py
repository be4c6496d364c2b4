"""Optimisation-based style transfer (Gatys, Ecker & Bethge 2016): optimise the pixels themselves.

This is the quality yardstick for the feed-forward networks: the objective is the same
`PerceptualLoss` the networks train against (same encoder, same content/style/TV terms), only the
thing being optimised differs. Pixels live on the 0-255 scale during optimisation so that `lr` means
grey levels per step, as in the original Caffe/Torch implementations (Adam lr 1 = about one grey
level per step); L-BFGS is scale-free with lr 1.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Colour preservation moved to fast_nst.stylize.color (shared with the Stylizer); still importable from here.
from fast_nst.stylize.color import luminance_image, recolour, rgb_to_yiq, yiq_to_rgb  # noqa: F401
from fast_nst.models.losses import PerceptualLoss


class GatysObjective(nn.Module):
    """`PerceptualLoss` with the content targets computed once for a fixed content image.

    Returns the same dict of weighted terms as `PerceptualLoss.forward(output, content)` (the
    training loss of the feed-forward networks), at one VGG pass per evaluation.
    """

    def __init__(self, perceptual: PerceptualLoss, content: torch.Tensor):
        super().__init__()
        self.perceptual = perceptual
        with torch.no_grad():
            self.targets = perceptual.encoder(content, layers=perceptual.content.layer_weights)

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.perceptual.weighted_terms(self.perceptual.encoder(img), self.targets, img)


@dataclass
class OptimizeResult:
    image: torch.Tensor                    # (1, 3, H, W) in [0, 1]
    history: list[dict[str, float]] = field(default_factory=list)  # terms of x_0 .. x_N
    seconds: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [h["loss"] for h in self.history]


def optimize_pixels(
    objective: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    init: torch.Tensor,
    optimizer: str = "lbfgs",
    iterations: int = 300,
    lr: float = 1.0,
    lr_step: int | None = None,
    lr_gamma: float = 0.5,
    callback: Callable[[int, dict[str, float], torch.Tensor], None] | None = None,
    stop_when: Callable[[], bool] | None = None,
    project: bool = False,
) -> OptimizeResult:
    """Minimise `objective(image)` over the pixels of `init` (values in [0, 1]).

    One L-BFGS iteration = one objective evaluation (max_iter=1 per step keeps its curvature
    history across steps), so `history[k]` is the loss of the k-th iterate for both optimizers and
    iteration counts compare directly with Johnson et al.'s Fig. 5. The objective is evaluated on
    the pixels clamped to the valid range, so every iterate is a valid image; clamping the variable
    itself in place would break L-BFGS's curvature pairs (it assumes the step it took) and measured
    divergence within 5 iterations on VGG16 at 64 px from the photo. `project=True` clips the
    variable to [0, 255] after every L-BFGS iteration instead (projected L-BFGS, the protocol of
    Johnson et al. 2016 sec. 4.1 for their start from noise; Adam always projects).
    `callback(k, terms, image)` runs after each evaluation with the variable itself on the 0-1
    scale (outside [0, 1] where an unprojected L-BFGS step left it; the objective saw it clipped);
    `stop_when()` is asked after each and ends the run when it returns True.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    # contiguous: L-BFGS flattens the gradient with .view(), and decoded images are often HWC-strided
    x = (init.detach().clamp(0, 1) * 255.0).contiguous().requires_grad_(True)
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=lr, max_iter=1, history_size=100, line_search_fn=None,
                                tolerance_grad=0.0, tolerance_change=0.0)  # scale-free: never stop early
    else:
        opt = torch.optim.Adam([x], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, lr_step, lr_gamma) if lr_step else None
    result = OptimizeResult(image=init)
    start = time.perf_counter()
    grad_scale: float | None = None

    def record(terms: dict[str, torch.Tensor]) -> None:
        rec = {k: float(v.detach()) for k, v in terms.items()}
        result.history.append(rec)
        if callback is not None:
            callback(len(result.history) - 1, rec, x.detach() / 255.0)  # the variable itself, unclipped

    def reached() -> bool:
        return stop_when is not None and bool(result.history) and stop_when()

    def evaluate() -> torch.Tensor:
        nonlocal grad_scale
        opt.zero_grad(set_to_none=True)
        terms = objective(x.clamp(0, 255) / 255.0)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"objective became {loss.item()} at iteration {len(result.history)}; lower lr or the "
                "style/content weights")
        loss.backward()
        if optimizer == "lbfgs":
            # torch's L-BFGS has absolute thresholds (curvature pairs with y.s < 1e-10 are
            # dropped), so a small objective (Gram/(C*H*W) losses are ~1e-3) would never build a
            # curvature model and crawl. A fixed rescaling that makes the first gradient O(1)
            # per pixel makes it scale-free; the reported losses stay unscaled.
            if grad_scale is None:
                grad_scale = 1.0 / float(x.grad.abs().mean().clamp_min(1e-30))
            x.grad.mul_(grad_scale)
            loss = loss.detach() * grad_scale
        record(terms)
        return loss

    for _ in range(iterations):
        if reached():
            break
        if optimizer == "lbfgs":
            opt.step(evaluate)
        else:
            evaluate()
            opt.step()
        if sched is not None:
            sched.step()
        if optimizer == "adam" or project:  # first-order: projecting is safe and stops drift
            with torch.no_grad():
                x.clamp_(0, 255)
    # The final iterate's loss (the loop records each iterate before stepping from it).
    if not reached():
        with torch.no_grad():
            record(objective(x.clamp(0, 255) / 255.0))
    result.seconds = time.perf_counter() - start
    result.image = (x.detach() / 255.0).clamp(0, 1)
    return result


# ImageNet mean pixel of the Caffe VGG models, RGB on the 0-255 scale.
CAFFE_MEAN_PIXEL = (123.68, 116.779, 103.939)
INIT_KINDS = ("content", "noise", "random", "style")


def initial_image(kind: str, content: torch.Tensor, style: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Where optimisation starts:

    * ``content``: the photo itself;
    * ``noise``: Johnson et al.'s start image, the Caffe mean pixel plus N(0, 1) grey levels (their
      code's ``randn`` in Caffe space): almost flat grey, so content and style must both be built;
    * ``random``: uniform noise over the whole range;
    * ``style``: the first style image resized to the content.
    """
    if kind == "content":
        return content.clone()
    if kind == "noise":
        mean = torch.tensor(CAFFE_MEAN_PIXEL).view(1, 3, 1, 1)
        x = mean + torch.randn(content.shape, generator=generator, device="cpu")
        return (x / 255.0).clamp(0, 1).to(content)
    if kind == "random":
        return torch.rand(content.shape, generator=generator, device="cpu").to(content)
    if kind == "style":
        if style is None:
            raise ValueError("init=style needs a style image")
        return F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False,
                             antialias=True).clamp(0, 1)
    raise ValueError(f"init must be one of {INIT_KINDS}, got {kind!r}")


def first_reaching(losses: list[float], target: float) -> int | None:
    """Index of the first iterate whose loss is <= target (None if none does)."""
    for k, v in enumerate(losses):
        if v <= target and math.isfinite(v):
            return k
    return None
