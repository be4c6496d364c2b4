"""Colour preservation and effect strength, applied after any stylization (network or optimiser).

Both work on (B, 3, H, W) tensors in [0, 1] and need only the photo and the stylized result, so
they serve every network kind the same way and `optimize.py` shares the colour transform.

Colour preservation follows Gatys et al. (2017, "Controlling perceptual factors", luminance-only
transfer): keep the stylized luminance Y, put back the photo's chroma (I, Q of BT.601 YIQ).
"""

from __future__ import annotations

from typing import Callable

import torch

# BT.601 luma and the YIQ chroma axes: luminance-only transfer keeps the content's I and Q.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)

Stylize = Callable[[torch.Tensor], torch.Tensor]


def rgb_to_yiq(img: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> YIQ along the channel axis."""
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(img), img)


def yiq_to_rgb(img: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _YIQ_TO_RGB.to(img), img)


def luminance_image(img: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Grey 3-channel image of `img`'s luminance; with `like`, its mean/std are matched to `like`'s
    luminance first (Gatys et al. 2017, 'Preserving colour': luminance-only transfer)."""
    y = rgb_to_yiq(img)[:, :1]
    if like is not None:
        ref = rgb_to_yiq(like)[:, :1]
        y = (y - y.mean()) / y.std().clamp_min(1e-6) * ref.std() + ref.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def recolour(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance of `stylized`, chroma (I, Q) of `content`: the photo's colours with the painting's
    light and texture. The result is clipped to RGB's [0, 1], which alters the chroma only where
    the combination falls outside the RGB cube."""
    _check_pair(stylized, content)
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], 1)).clamp(0, 1)


def blend_strength(stylized: torch.Tensor, content: torch.Tensor, strength: float) -> torch.Tensor:
    """`content + strength * (stylized - content)`: 0 gives the photo, 1 the full stylization.

    For network kinds without a strength control of their own (a per-style Johnson network has
    none; AdaIN has its alpha). Values above 1 extrapolate and are clipped; they are refused
    because the result is no longer a blend."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1] (0 = the photo, 1 = full style), got {strength}")
    _check_pair(stylized, content)
    if strength == 1.0:
        return stylized
    if strength == 0.0:
        return content.to(stylized.dtype, copy=True)
    return torch.lerp(content.to(stylized.dtype), stylized, strength)


def finish(stylized: torch.Tensor, content: torch.Tensor, *, preserve_color: bool = False,
           strength: float = 1.0) -> torch.Tensor:
    """Colour preservation, then strength. Both are linear in the stylized image's luminance, so the
    order only matters where clipping bites."""
    out = recolour(stylized, content) if preserve_color else stylized
    return blend_strength(out, content, strength)


def with_color_and_strength(stylize: Stylize, *, preserve_color: bool = False,
                            strength: float = 1.0) -> Stylize:
    """Wrap a tensor-in/tensor-out stylization so its output keeps the photo's colours and/or is
    blended with the photo. Returns `stylize` itself when neither is asked for."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1] (0 = the photo, 1 = full style), got {strength}")
    if not preserve_color and strength == 1.0:
        return stylize

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        if strength == 0.0:  # the photo itself: skip the network
            return x.clone()
        return finish(stylize(x), x, preserve_color=preserve_color, strength=strength)

    return wrapped


def _check_pair(stylized: torch.Tensor, content: torch.Tensor) -> None:
    if stylized.dim() != 4 or stylized.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB batches, got stylized {tuple(stylized.shape)}")
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {tuple(stylized.shape)} and content {tuple(content.shape)} differ in "
                         "shape; colour and strength need the photo at the output's size")
