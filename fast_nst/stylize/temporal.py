"""Flicker in stylized video: a metric, and smoothing that reduces it.

A feed-forward network stylizes each frame on its own, so texture that the painting puts in flat
or noisy areas is re-invented every frame and shimmers. The metric follows the issue's definition:
the mean absolute frame-to-frame change of the stylized frames, next to the same for the input
frames; their ratio is how much more the output moves than the scene does (1 would be no added
flicker, for a network that only recolours).

Smoothers blend each stylized frame with the previous smoothed output. A plain exponential blend
removes flicker everywhere and smears anything that moves; the change-gated blend only blends
where the input frame itself barely changed (the camera and scene are still there, so any change
in the output there is flicker) and follows the new frame where the input moved; the
motion-compensated blend first moves the previous output along with the camera (a global affine
motion estimated between the input frames), so a pan or zoom no longer counts as change, then
gates like the former on what the camera motion does not explain. All work on (3, H, W) tensors
in [0, 1], one frame at a time in display order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Flicker:
    input_change: float    # mean |x_t - x_{t-1}| over pixels, channels and frame pairs, 0..1 scale
    output_change: float   # the same for the stylized (and smoothed) frames
    pairs: int             # frame pairs measured

    @property
    def ratio(self) -> float:
        """Output change per unit of input change (inf for a still input with a changing output)."""
        if self.input_change > 0:
            return self.output_change / self.input_change
        return float("inf") if self.output_change > 0 else 1.0

    def __str__(self) -> str:
        return (f"frame-to-frame change: input {self.input_change:.4f}, output {self.output_change:.4f} "
                f"({self.ratio:.2f}x the input's, {self.pairs} frame pairs)")


class FlickerMeter:
    """Feed frames in order with `update(content, output)`; `result()` gives the Flicker."""

    def __init__(self):
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None
        self._din = self._dout = 0.0
        self._pairs = 0

    def update(self, content: torch.Tensor, output: torch.Tensor) -> None:
        content, output = content.detach().float(), output.detach().float().clamp(0, 1)
        if self._prev is not None:
            pc, po = self._prev
            self._din += float((content - pc).abs().mean())
            self._dout += float((output - po).abs().mean())
            self._pairs += 1
        self._prev = (content, output)

    def result(self) -> Flicker:
        n = max(1, self._pairs)
        return Flicker(self._din / n, self._dout / n, self._pairs)


class Smoother(Protocol):
    def reset(self) -> None: ...

    def __call__(self, content: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor: ...


class RecurrentSmoother:
    """What every smoother shares: it remembers the previous (input, output) frame pair, starts
    over on the first frame and whenever the frame size changes (a new clip), and otherwise asks
    `blend` how much of the previous output to keep."""

    def __init__(self):
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        self._prev = None

    def __call__(self, content: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
        content, stylized = content.float(), stylized.float()
        if self._prev is None or self._prev[1].shape != stylized.shape:
            out = stylized
        else:
            out = self.blend(content, stylized, *self._prev)
        self._prev = (content, out)
        return out

    def blend(self, content: torch.Tensor, stylized: torch.Tensor, prev_content: torch.Tensor,
              prev_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _check_strength(strength: float) -> float:
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"smoothing strength must be in [0, 1), got {strength}")
    return strength


class ExponentialSmoother(RecurrentSmoother):
    """out_t = strength * out_{t-1} + (1 - strength) * stylized_t: flicker falls everywhere, and
    moving things leave trails of about 1 / (1 - strength) frames."""

    def __init__(self, strength: float = 0.5):
        super().__init__()
        self.strength = _check_strength(strength)

    def blend(self, content, stylized, prev_content, prev_out):
        return torch.lerp(stylized, prev_out, self.strength)


class GatedSmoother(RecurrentSmoother):
    """Blend with the previous output only where the input frame did not change.

    Per pixel, the blend weight is `strength * exp(-(d / threshold)^2)`, with d the input's
    frame-to-frame change (mean over RGB, averaged over a `radius` neighbourhood so sensor noise
    does not open the gate). Still areas get the full exponential smoothing; where the input moved
    by more than about `threshold` the new stylized frame shows through, so motion leaves no trail.
    """

    def __init__(self, strength: float = 0.8, threshold: float = 0.04, radius: int = 2):
        super().__init__()
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.strength, self.threshold, self.radius = _check_strength(strength), threshold, radius

    def gate(self, content: torch.Tensor, previous_content: torch.Tensor) -> torch.Tensor:
        """(1, H, W) blend weight of the previous output."""
        d = (content - previous_content).abs().mean(0, keepdim=True)
        if self.radius > 0:
            k = 2 * self.radius + 1
            d = F.avg_pool2d(d.unsqueeze(0), k, stride=1, padding=self.radius, count_include_pad=False)[0]
        return self.strength * torch.exp(-(d / self.threshold) ** 2)

    def blend(self, content, stylized, prev_content, prev_out):
        return torch.lerp(stylized, prev_out, self.gate(content, prev_content))


def _luma(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).unsqueeze(0).unsqueeze(0)


def estimate_affine(moving: torch.Tensor, fixed: torch.Tensor, width: int = 192, levels: int = 3,
                    iterations: int = 8) -> torch.Tensor:
    """(2, 3) affine A in affine_grid's normalised coordinates such that sampling `moving` at
    A @ (x, y, 1) reproduces `fixed` (both (3, H, W)): the camera's motion between two frames.

    Gauss-Newton (forward-additive Lucas-Kanade) on the squared luminance difference, coarse to
    fine on a pyramid of a `width`-px-wide copy."""
    h, w = fixed.shape[-2:]
    size = (max(8, round(h * width / w)), width) if w > width else (h, w)
    mov = F.interpolate(_luma(moving.float()), size=size, mode="bilinear", antialias=True, align_corners=False)
    fix = F.interpolate(_luma(fixed.float()), size=size, mode="bilinear", antialias=True, align_corners=False)
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for level in reversed(range(levels)):
        k = 2 ** level
        m = F.avg_pool2d(mov, k) if k > 1 else mov
        f = F.avg_pool2d(fix, k) if k > 1 else fix
        hh, ww = f.shape[-2:]
        if min(hh, ww) < 8:
            continue
        # image gradients of `moving` per normalised unit (the grid spans 2 units over the width)
        gx = F.pad((m[..., :, 2:] - m[..., :, :-2]) / 2, (1, 1, 0, 0), mode="replicate") * (ww / 2)
        gy = F.pad((m[..., 2:, :] - m[..., :-2, :]) / 2, (0, 0, 1, 1), mode="replicate") * (hh / 2)
        stack = torch.cat([m, gx, gy], 1)
        base = F.affine_grid(torch.eye(2, 3).unsqueeze(0), [1, 1, hh, ww], align_corners=False)[0]
        xs, ys = base[2:-2, 2:-2, 0].reshape(-1), base[2:-2, 2:-2, 1].reshape(-1)  # borders see padding
        target = f[0, 0, 2:-2, 2:-2].reshape(-1)
        for _ in range(iterations):
            grid = F.affine_grid(theta.unsqueeze(0), [1, 1, hh, ww], align_corners=False)
            warped = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
            wi, wgx, wgy = (c[2:-2, 2:-2].reshape(-1) for c in warped)
            jac = torch.stack([wgx * xs, wgx * ys, wgx, wgy * xs, wgy * ys, wgy], 1)
            step = torch.linalg.lstsq(jac, (target - wi).unsqueeze(1)).solution.view(2, 3)
            theta = theta + step
            if float(step.abs().max()) < 1e-5:
                break
    return theta


class CompensatedSmoother(RecurrentSmoother):
    """Gated blend with the previous output after moving it along with the camera.

    Per frame: estimate the global affine motion from the previous input frame to this one, warp
    the previous input and output with it, and blend the warped output in with weight
    `strength * exp(-(d / threshold)^2)`, d being what the motion does not explain (the input's
    remaining difference, averaged over a `radius` neighbourhood); zero where the warp looks
    outside the previous frame. Pans and zooms keep their smoothing; objects moving on their own
    and cuts fall back to the new frame."""

    def __init__(self, strength: float = 0.8, threshold: float = 0.04, radius: int = 2):
        super().__init__()
        self.gated = GatedSmoother(strength, threshold, radius)   # its gate, after the warp

    def blend(self, content, stylized, prev_content, prev_out):
        theta = estimate_affine(prev_content, content)
        grid = F.affine_grid(theta.unsqueeze(0), [1, 3, *content.shape[-2:]], align_corners=False)
        both = F.grid_sample(torch.stack([prev_content, prev_out]), grid.expand(2, -1, -1, -1),
                             mode="bilinear", padding_mode="border", align_corners=False)
        inside = (grid.abs() <= 1).all(-1).float()  # (1, H, W)
        return torch.lerp(stylized, both[1], self.gated.gate(content, both[0]) * inside)


def make_smoother(kind: str | None, strength: float = 0.8, **kwargs) -> Smoother | None:
    """'none' / None, 'ema' (ExponentialSmoother), 'gated' (GatedSmoother) or 'motion'
    (CompensatedSmoother), for configs."""
    if kind in (None, "none", "off") or strength == 0:
        return None
    if kind == "ema":
        return ExponentialSmoother(strength)
    if kind == "gated":
        return GatedSmoother(strength, **kwargs)
    if kind == "motion":
        return CompensatedSmoother(strength, **kwargs)
    raise ValueError(f"temporal smoothing must be none, ema, gated or motion, got {kind!r}")
