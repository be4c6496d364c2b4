"""Stylize images too big for one forward pass: overlapping tiles, blended seams, and instance-norm
statistics of the whole image.

Per-tile instance norm gives every tile its own contrast and colour balance and the seams show, so
every tile is normalised with statistics of the whole picture (fast_nst.stylize.norm_stats), from one of:

* "thumbnail" (default): one pass over the image downscaled to `stats_size` on its long side (Chen
  et al., "Towards Ultra-Resolution Neural Style Transfer via Thumbnail Instance Normalization",
  AAAI 2022). Cheap, and all tiles share the statistics, so they match; but the network's feature
  statistics depend on scale, so the result is close to, not equal to, the untiled image's.
  Measured with the shipped network on a 3000x2000 photo, untiled with thumbnail statistics vs
  untiled: 32.5 dB PSNR at 1024 px, 34.6 at 1536, 37.9 at 2048.
* "sweep": the full-resolution statistics, measured over the tiles one norm layer at a time: sweep
  k runs every tile only as far as norm layer k, the layers before it normalised with the
  statistics already found, and sums layer k's input over the part of the image each tile owns.
  Exact up to tile-border effects (58 dB from the untiled image on a 700x500 photo in 256 px
  tiles), but the sweeps cost about 6x one pass over the tiles. Two cheaper shortcuts measured
  worse than the thumbnail: visiting an evenly spread seventh of the tiles (22 dB on a 1400x1000
  photo, where a half-size thumbnail gave 29 dB on the same photo at 1000x700: a part of a photo
  is not a sample of all of it), and re-measuring all layers in one sweep from thumbnail
  statistics (17 dB against the thumbnail's 27 on the 700x500 photo: each layer's input moves
  away from the statistics it is then normalised with).
* "tile": each tile its own statistics, what a plain tiled forward does: for comparison (27 dB
  from the untiled image on that 700x500 photo, with visible tile-to-tile changes).

Tiles start on multiples of the network's total stride (4) so their stride-2 sampling grids
coincide with the untiled image's, and neighbours overlap by `overlap` pixels, cross-faded linearly
across the overlap, where each tile's own border (reflection-padded, not the real neighbourhood)
weighs least.

Memory: the input and output at full size (float32 RGB: 12 bytes per pixel each), one tile's
activations and the thumbnail pass's; no full-size activation is ever held.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fast_nst.stylize.norm_stats import MomentSums, NormStatistics, measure_layer, recording, replaying, norm_layer_count

STATS_MODES = ("thumbnail", "sweep", "tile")
Progress = Callable[[str, int, int], None]


def tile_spans(length: int, tile: int, overlap: int, align: int = 4) -> list[tuple[int, int]]:
    """[start, end) spans covering `length`: each about `tile` long, neighbours overlapping by at
    least about `overlap`, starts on multiples of `align`. The last span ends at `length` and may be
    up to `align - 1` longer than `tile`."""
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than tile_overlap ({overlap})")
    if overlap < 0:
        raise ValueError(f"tile_overlap must be >= 0, got {overlap}")
    if tile < 2 * align:
        raise ValueError(f"tile must be at least {2 * align} px, got {tile}")
    if length < tile + align:  # one tile, at most align - 1 px longer than asked
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    last = (length - tile) // align * align
    starts = [round(i * last / (n - 1) / align) * align for i in range(n)]
    return [(s, s + tile if i < n - 1 else length) for i, s in enumerate(starts)]


def _cores(spans: list[tuple[int, int]], length: int, align: int) -> list[tuple[int, int]]:
    """The part of the (padded) axis each span owns: borders halfway through each overlap, on
    multiples of `align`; together they partition [0, length rounded up to align)."""
    cuts = [0] + [round((spans[i + 1][0] + spans[i][1]) / 2 / align) * align for i in range(len(spans) - 1)]
    return list(zip(cuts, cuts[1:] + [-(-length // align) * align]))


def _ramp(spans: list[tuple[int, int]], i: int) -> torch.Tensor:
    """1-D blending weight of span i: 1 inside, rising/falling linearly across the overlap with its
    neighbours (never exactly 0, so every pixel has weight)."""
    s, e = spans[i]
    pos = torch.arange(s, e, dtype=torch.float32) + 0.5
    w = torch.ones(e - s)
    if i > 0 and spans[i - 1][1] > s:
        w = torch.minimum(w, (pos - s) / (spans[i - 1][1] - s))
    if i + 1 < len(spans) and e > spans[i + 1][0]:
        w = torch.minimum(w, (e - pos) / (e - spans[i + 1][0]))
    return w


def thumbnail(x: torch.Tensor, long_side: int) -> torch.Tensor:
    """x resized (antialiased) so its long side is `long_side`, or x itself if already smaller."""
    h, w = x.shape[-2:]
    if max(h, w) <= long_side:
        return x
    s = long_side / max(h, w)
    return F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                         antialias=True, align_corners=False).clamp_(0, 1)


def _device_dtype(net: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(net.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


def _padded(n: int, align: int) -> int:
    """The size the network convolves a side of n px at (TransformerNet pads to a multiple of 4, >= 8)."""
    return max(2 * align, -(-n // align) * align)


@torch.inference_mode()
def thumbnail_statistics(net: nn.Module, x: torch.Tensor, stats_size: int = 2048) -> NormStatistics:
    """Instance-norm statistics of x (1, 3, H, W) from one pass over a thumbnail whose long side is
    `stats_size` (exact when the image is no bigger; an approximation otherwise)."""
    device, dtype = _device_dtype(net)
    with recording(net) as stats:
        net(thumbnail(x, stats_size).to(device, dtype))
    return stats


@torch.inference_mode()
def sweep_statistics(net: nn.Module, x: torch.Tensor, rows: list[tuple[int, int]], cols: list[tuple[int, int]],
                     *, align: int = 4, progress: Progress | None = None) -> NormStatistics:
    """Instance-norm statistics of the full-resolution image x (1, 3, H, W), measured layer by
    layer over its tiles (`rows` x `cols` spans, as `tile_spans` makes them)."""
    device, dtype = _device_dtype(net)
    h, w = x.shape[-2:]
    row_cores, col_cores = _cores(rows, h, align), _cores(cols, w, align)
    n_layers = norm_layer_count(net)
    known = NormStatistics([None] * n_layers)
    total, done = n_layers * len(rows) * len(cols), 0
    for k in range(n_layers):
        sums = MomentSums(n_layers)
        for (r0, r1), (cr0, cr1) in zip(rows, row_cores):
            for (c0, c1), (cc0, cc1) in zip(cols, col_cores):
                sums.region = (cr0 - r0, cr1 - r0, cc0 - c0, cc1 - c0)
                sums.padded = (_padded(r1 - r0, align), _padded(c1 - c0, align))
                measure_layer(net, x[..., r0:r1, c0:c1].to(device, dtype), known, k, sums)
                done += 1
                if progress is not None:
                    progress("statistics", done, total)
        known.layers[k] = sums.moments(k)
    return known


@torch.inference_mode()
def stylize_tiled(net: nn.Module, x: torch.Tensor, *, tile: int = 512, overlap: int = 64,
                  stats: str | NormStatistics = "thumbnail", stats_size: int = 2048, align: int = 4,
                  progress: Progress | None = None) -> torch.Tensor:
    """Stylize x (B, 3, H, W) in [0, 1] tile by tile; returns (B, 3, H, W) float32 on CPU.

    `net`: a module that normalises in instance-norm layers (fast_nst InstanceNormBase or
    `torch.nn.InstanceNorm2d`; see norm_stats).
    `stats`: "thumbnail" (from one pass over the image downscaled to `stats_size`: exact when the
    image is no bigger, close otherwise), "sweep" (the full-resolution statistics measured over
    the tiles, ~6x slower), "tile" (each tile its own: for comparison only), or NormStatistics
    recorded beforehand (see the module docstring for measured errors). `progress(stage, done, total)` is called
    after each tile of each stage ("statistics", "tiles").
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) RGB batch, got {tuple(x.shape)}")
    if isinstance(stats, str) and stats not in STATS_MODES:
        raise ValueError(f"stats must be one of {STATS_MODES} or NormStatistics, got {stats!r}")
    b, _, h, w = x.shape
    rows, cols = tile_spans(h, tile, overlap, align), tile_spans(w, tile, overlap, align)
    device, dtype = _device_dtype(net)
    # The blend normaliser is separable: the tile grid is rows x columns and each window is a
    # product of a row ramp and a column ramp, so the windows sum to (sum of row ramps) x (sum of
    # column ramps): two 1-D arrays instead of an H x W weight map.
    row_w, col_w = [_ramp(rows, i) for i in range(len(rows))], [_ramp(cols, j) for j in range(len(cols))]
    row_sum, col_sum = torch.zeros(h), torch.zeros(w)
    for (s, e), r in zip(rows, row_w):
        row_sum[s:e] += r
    for (s, e), c in zip(cols, col_w):
        col_sum[s:e] += c
    out = torch.empty(b, 3, h, w, dtype=torch.float32)
    total, done = b * len(rows) * len(cols), 0
    for k in range(b):
        img = x[k:k + 1]
        if isinstance(stats, NormStatistics):
            image_stats = stats.select(k) if stats.layers[0].mean.shape[0] > 1 else stats
        elif stats == "sweep":
            image_stats = sweep_statistics(net, img, rows, cols, align=align, progress=progress)
        elif stats == "thumbnail":
            image_stats = thumbnail_statistics(net, img, stats_size)
        else:
            image_stats = None
        out[k].zero_()
        for (r0, r1), rw in zip(rows, row_w):
            for (c0, c1), cw in zip(cols, col_w):
                piece = img[..., r0:r1, c0:c1].to(device, dtype)
                if image_stats is None:
                    y = net(piece)
                else:
                    with replaying(net, image_stats):
                        y = net(piece)
                weight = (rw / row_sum[r0:r1]).view(-1, 1) * (cw / col_sum[c0:c1]).view(1, -1)
                out[k, :, r0:r1, c0:c1].addcmul_(y[0].float().cpu(), weight)
                done += 1
                if progress is not None:
                    progress("tiles", done, total)
    return out.clamp_(0, 1)
