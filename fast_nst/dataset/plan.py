"""What a dataset job does to each image, decided before any worker starts (no Ray in here).

* `mirror_outputs`: input/<rel>.jpg -> output/<rel>.<format>, names kept unique;
* `assign_painting`: each image's painting, a function of the seed and the image's relative path
  only, so a rerun, a resumed run or any worker on any node gives the same answer;
* `is_done`: an output counts as done when it is a non-empty file that decodes to the end
  (a run killed mid-write leaves only a temporary file, which `remove_stale_temporaries` clears).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from fast_nst.io.errors import ConfigError

FORMATS = {"same": None, "jpg": ".jpg", "png": ".png", "webp": ".webp"}
# fast_nst.io.images.atomic_write's temporary files: .<name>.<8 random chars>.tmp beside <name>
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


@dataclass(frozen=True)
class Item:
    """One image of the job: paths are absolute strings, so Ray can ship rows as plain columns."""
    image: str        # the input's path relative to input=, POSIX separators (the manifest's key)
    source: str       # input file
    output: str       # output file
    painting: str     # painting file (any-painting kinds) or the network's painting name

    def row(self) -> dict[str, str]:
        return asdict(self)


def output_suffix(source: Path, fmt: str) -> str:
    """format=same: JPEG in, JPEG out; anything else becomes PNG (as stylize.py does)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt}: must be one of {', '.join(FORMATS)}")
    if FORMATS[fmt]:
        return FORMATS[fmt]
    s = source.suffix.lower()
    return s if s in (".jpg", ".jpeg", ".png") else ".png"


def mirror_outputs(files: Sequence[Path], input_dir: Path, output_dir: Path, fmt: str) -> list[Path]:
    """output_dir/<path relative to input_dir> with the format's suffix; a.jpg and a.png that
    would both become a.jpg keep both (the second as a_png.jpg)."""
    outs, seen = [], set()
    for f in files:
        o = output_dir / f.relative_to(input_dir).with_suffix(output_suffix(f, fmt))
        if o in seen:
            o = o.with_name(f"{o.stem}_{f.suffix.lstrip('.').lower()}{o.suffix}")
        seen.add(o)
        outs.append(o)
    return outs


def assign_painting(image: str, paintings: Sequence[str], seed: int) -> str:
    """The painting of the image at relative path `image`: sha256 of seed and path, modulo the
    number of paintings. It depends on nothing else (not the order, the worker, the run), so the
    same seed, path and painting list always give the same painting; adding or removing a
    painting reassigns images."""
    if not paintings:
        raise ValueError("no paintings to assign")
    digest = hashlib.sha256(f"{int(seed)}\0{image}".encode()).digest()
    return paintings[int.from_bytes(digest[:8], "big") % len(paintings)]


def plan(files: Sequence[Path], input_dir: Path, output_dir: Path, fmt: str,
         paintings: Sequence[str], seed: int) -> list[Item]:
    """One Item per input file. `paintings`: what `assign_painting` draws from (painting files,
    or the network's painting names)."""
    items = []
    for f, o in zip(files, mirror_outputs(files, input_dir, output_dir, fmt)):
        rel = f.relative_to(input_dir).as_posix()
        items.append(Item(rel, str(f), str(o), assign_painting(rel, paintings, seed)))
    return items


def is_done(path: str | os.PathLike) -> bool:
    """A finished output: a non-empty file that decodes to its last byte (a JPEG at 1/8 scale,
    which still reads the whole stream, so a truncated file fails)."""
    from PIL import Image

    try:
        if os.stat(path).st_size == 0:
            return False
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        return True
    except Exception:  # missing, unreadable, truncated, not an image: not done
        return False


def remove_stale_temporaries(output_dir: Path) -> int:
    """Delete the temporary files a killed run left mid-write (atomic_write's `.<name>.XXXXXXXX.tmp`)
    under `output_dir`; returns how many. Nothing else is touched."""
    n = 0
    if not output_dir.is_dir():
        return 0
    for root, _, names in os.walk(output_dir):
        for name in names:
            if _TEMPORARY.match(name):
                Path(root, name).unlink(missing_ok=True)
                n += 1
    return n
