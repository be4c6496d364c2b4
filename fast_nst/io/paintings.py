"""Paintings: what a network was trained on, how to name them in configs, and how to find their
files again on another machine.

A painting is given by a bundled name (`conf/style/<name>.yaml`: image, style-weight multiplier,
title, credit), by an image file (named after the file), or by a dict with those keys. Exports
record each painting's name, credit, file name and sha256, so `locate_painting` can find the
exact file that was trained on in a fresh checkout (quality.py rebuilds the training objective
from it), or say precisely which file is missing.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from fast_nst.io.files import file_sha256
from fast_nst.io.images import IMAGE_EXTENSIONS, ImageError, list_images, load_rgb, resolve_path
from fast_nst.io.paths import CONF, PROJECT_ROOT

STYLE_CONF = CONF / "style"
BUNDLED_PAINTINGS = PROJECT_ROOT / "assets" / "styles"


@dataclass(frozen=True)
class Painting:
    name: str                  # how configs, exports and stylize.py's style= refer to it
    image: str                 # the file as given in the config (bundled paths stay relative)
    weight: float = 1.0        # multiplies loss.style_weight for this painting
    title: str | None = None   # e.g. "The Starry Night"
    credit: str | None = None  # artist, date, licence
    sha256: str | None = None  # of the file trained on; set by `with_hash`

    @property
    def file(self) -> str:
        return Path(self.image).name

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Painting":
        d = dict(OmegaConf.to_container(d, resolve=True) if isinstance(d, DictConfig) else d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"painting {d.get('name', d)}: unknown keys {unknown}; known: {sorted(known)}")
        if not d.get("name") or not d.get("image"):
            raise ValueError(f"a painting needs a name and an image, got {d}")
        if "weight" in d:
            d["weight"] = float(d["weight"])
        return cls(**d)

    def with_hash(self) -> "Painting":
        """This painting with the sha256 of the file it resolves to now (to find it again later)."""
        path = resolve_path(self.image)
        if not path.is_file():
            raise ImageError(f"painting {self.name}: {self.image} not found (looked in {path})")
        return replace(self, sha256=file_sha256(path))


def bundled_names() -> list[str]:
    """The bundled paintings' names (conf/style/<name>.yaml): the one list of them."""
    return sorted(p.stem for p in STYLE_CONF.glob("*.yaml"))


def bundled_paintings() -> dict[str, Path]:
    """name -> image file of every bundled painting, in name order."""
    return {name: resolve_path(resolve_painting(name).image) for name in bundled_names()}


def _looks_like_file(spec: str) -> bool:
    return Path(spec).suffix.lower() in IMAGE_EXTENSIONS or os.sep in spec or "/" in spec


def resolve_painting(spec: Any) -> Painting:
    """A bundled name (`starry_night`), an image file (named after its stem), or a dict/config
    with name, image and optionally weight, title, credit."""
    if isinstance(spec, (Mapping, DictConfig)):
        return Painting.from_dict(spec)
    spec = str(spec)
    bundled = STYLE_CONF / f"{spec}.yaml"
    if not _looks_like_file(spec) and bundled.is_file():
        return Painting.from_dict(OmegaConf.load(bundled))
    path = resolve_path(spec)
    if path.is_file():
        for cfg in STYLE_CONF.glob("*.yaml"):  # a bundled painting given by its file keeps its record
            bundled_painting = Painting.from_dict(OmegaConf.load(cfg))
            if resolve_path(bundled_painting.image).resolve() == path.resolve():
                return bundled_painting
        return Painting(name=path.stem, image=spec)
    raise ImageError(f"painting {spec!r}: no such file and not a bundled style (bundled: "
                     f"{', '.join(bundled_names())}); give one of those or an image file (a .jpg/.png path)")


def resolve_paintings(specs: Any) -> list[Painting]:
    """A list of specs (see `resolve_painting`), or one folder: every image in it, by file name."""
    if isinstance(specs, (str, os.PathLike)) and resolve_path(specs).is_dir():
        files = list_images(specs)
        if not files:
            raise ImageError(f"styles={specs}: the folder holds no images")
        specs = [str(f) for f in files]
    if isinstance(specs, (str, os.PathLike, Mapping, DictConfig)):
        specs = [specs]
    paintings = [resolve_painting(s) for s in (specs if isinstance(specs, (list, tuple, ListConfig)) else [specs])]
    if not paintings:
        raise ValueError("styles= is empty: give at least one painting")
    seen: dict[str, Painting] = {}
    for p in paintings:
        if p.name in seen:
            raise ValueError(f"two paintings are named {p.name!r} ({seen[p.name].image} and {p.image}); "
                             "give one of them another name with a dict entry {name: ..., image: ...}")
        seen[p.name] = p
    return paintings


def training_paintings(styles: Any, style: Any) -> list[Painting]:
    """What a run trains on: the `styles` list when set, else the one painting of the `style`
    group. Each painting carries the sha256 of its file."""
    chosen = resolve_paintings(styles) if styles else [resolve_painting(style)]
    return [p.with_hash() for p in chosen]


def locate_painting(p: Painting, search: Iterable[str | os.PathLike] = ()) -> Path:
    """The file `p` was trained on, on this machine: the recorded path, then the same file name in
    `search` folders and the bundled paintings. When a sha256 is recorded, only a file with that
    hash counts (an edited or different painting would give a different objective)."""
    candidates = [resolve_path(p.image)] + [Path(d) / p.file for d in search] + [BUNDLED_PAINTINGS / p.file]
    tried = []
    for c in candidates:
        if not c.is_file():
            tried.append(f"{c} (missing)")
            continue
        if p.sha256 and file_sha256(c) != p.sha256:
            tried.append(f"{c} (different file: sha256 differs)")
            continue
        return c
    raise FileNotFoundError(f"painting {p.name!r} ({p.file}, sha256 {p.sha256 or 'not recorded'}) is not on this "
                            f"machine; tried: {'; '.join(tried)}. Pass the file with style_image=PATH")


def thumbnail_b64(path: str | os.PathLike, size: int) -> str:
    """A small JPEG of the painting (long side `size`), base64, for embedding in an export."""
    im = load_rgb(path, max_size=size)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_image(b64: str):
    """The PIL image of an embedded thumbnail."""
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
