"""Config checks that run before any slow work (VGG weights, data scan, model load): each bad
value is reported at once as a ConfigError naming the option and what to do."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fast_nst.errors import ConfigError
from fast_nst.images import IMAGE_EXTENSIONS, PROJECT_ROOT, resolve_path


def _get(cfg: DictConfig, key: str):
    """The value at dotted `key`, None when absent; a required (???) value raises ConfigError."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if parent is None or leaf not in parent.keys():  # `in` is False for a ??? value
        return None
    if OmegaConf.is_missing(parent, leaf):
        raise ConfigError(f"{key} is required: add {key}=... to the command line")
    return parent[leaf]


def _positive(cfg: DictConfig, key: str, allow_none: bool = False, integer: bool = True) -> list[str]:
    v = _get(cfg, key)
    if v is None and allow_none:
        return []
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and (not integer or int(v) == v)
    return [] if ok else [f"{key}={v}: must be a positive {'integer' if integer else 'number'}"
                          + (" (or null)" if allow_none else "")]


def _writable_dir(key: str, value) -> list[str]:
    """The folder, or its nearest existing parent, must be a writable folder."""
    p = Path(os.path.expanduser(str(value))).absolute()
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return [f"{key}={value}: {probe} is not a folder; choose a folder for {key}"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"{key}={value}: {probe} is not writable; choose a folder you can write to with {key}=DIR"]
    return []


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} config problems: " + "; ".join(problems))


def bundled_styles() -> list[str]:
    return sorted(f.stem for f in (PROJECT_ROOT / "conf" / "style").glob("*.yaml"))


def validate_train(cfg: DictConfig) -> None:
    problems: list[str] = []
    image = _get(cfg, "style.image")
    if image is not None and not resolve_path(image).is_file():
        problems.append(f"style.image={image}: no such file; give a painting with style.image=PATH "
                        f"(and style.name=NAME), or pick a bundled one: style={{{','.join(bundled_styles())}}}")
    if OmegaConf.select(cfg, "data") is not None and "root" in cfg.data.keys() and _get(cfg, "data.root") is None:
        problems.append("data.root is required: add data.root=DIR (a folder of photos, searched recursively)")
    for key in ("data.root", "data.val_root"):
        root = _get(cfg, key)
        if root is None:
            continue
        p = resolve_path(root)
        if not p.is_dir():
            problems.append(f"{key}={root}: {'no such folder' if not p.exists() else 'not a folder'} "
                            f"(looked in {p}); point {key} at a folder of photos")
    problems += _positive(cfg, "data.image_size") + _positive(cfg, "data.batch_size")
    problems += _positive(cfg, "trainer.max_steps") + _positive(cfg, "optim.lr", integer=False)
    problems += _positive(cfg, "loss.style_size", allow_none=True)
    problems += _positive(cfg, "data.max_image_pixels", allow_none=True)
    if _get(cfg, "export.dir") is not None:
        problems += _writable_dir("export.dir", cfg.export.dir)
    _raise(problems)


def validate_stylize(cfg: DictConfig) -> None:
    _get(cfg, "ckpt"), _get(cfg, "input")  # required values first
    problems = _positive(cfg, "max_size", allow_none=True) + _positive(cfg, "batch_size")
    problems += _positive(cfg, "style_size", allow_none=True) + _positive(cfg, "max_pixels", allow_none=True)
    q = _get(cfg, "quality")
    if q is not None and not (isinstance(q, int) and 1 <= q <= 100):
        problems.append(f"quality={q}: JPEG quality must be an integer from 1 to 100")
    out = _get(cfg, "output")
    if out is not None:
        folder = Path(str(out)).parent if Path(str(out)).suffix.lower() in IMAGE_EXTENSIONS else Path(str(out))
        problems += _writable_dir("output", folder)
    _raise(problems)


def validate_dataset(cfg: DictConfig) -> None:
    """stylize-dataset (fast_nst.dataset): sizes and counts positive, strength in [0, 1], a known
    format, a JPEG quality, a writable output folder; before Ray or the network starts."""
    from fast_nst.dataset.plan import FORMATS

    _get(cfg, "ckpt"), _get(cfg, "input"), _get(cfg, "output")  # required values first
    problems = _positive(cfg, "max_size", allow_none=True) + _positive(cfg, "max_pixels", allow_none=True)
    problems += _positive(cfg, "style_size", allow_none=True) + _positive(cfg, "batch_size")
    problems += _positive(cfg, "actors", allow_none=True) + _positive(cfg, "threads")
    problems += _positive(cfg, "num_cpus", allow_none=True) + _positive(cfg, "object_store_mb")
    problems += _positive(cfg, "progress_every_s", integer=False)
    s = _get(cfg, "strength")
    if not (isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 1):
        problems.append(f"strength={s}: must be between 0 (the photo) and 1 (full style)")
    seed = _get(cfg, "seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        problems.append(f"seed={seed}: must be an integer (it draws each image's painting)")
    g = _get(cfg, "gpus")
    if not (isinstance(g, (int, float)) and not isinstance(g, bool) and g >= 0):
        problems.append(f"gpus={g}: GPUs per actor, 0 (CPU) or a positive number such as 0.25 or 1")
    if _get(cfg, "format") not in FORMATS:
        problems.append(f"format={_get(cfg, 'format')}: must be one of {', '.join(FORMATS)}")
    q = _get(cfg, "quality")
    if not (isinstance(q, int) and 1 <= q <= 100):
        problems.append(f"quality={q}: JPEG/WebP quality must be an integer from 1 to 100")
    problems += _writable_dir("output", _get(cfg, "output"))
    _raise(problems)


def _output_folder(cfg: DictConfig, key: str, is_file: bool) -> list[str]:
    out = _get(cfg, key)
    if out is None:
        return []
    return _writable_dir(key, Path(str(out)).parent if is_file else Path(str(out)))


def validate_optimize(cfg: DictConfig) -> None:
    """optimize.py: the photo and paintings exist, sizes and counts are positive, one blend weight
    per painting, a writable output folder; before the VGG loads."""
    from fast_nst.images import ImageError
    from fast_nst.paintings import locate_painting, resolve_painting

    problems: list[str] = []
    content = _get(cfg, "content")
    if content is not None and not resolve_path(content).is_file():
        problems.append(f"content={content}: no such file (looked in {resolve_path(content)}); give a photo")
    styles = _get(cfg, "style")
    styles = [] if styles is None else list(styles) if OmegaConf.is_list(styles) else [styles]
    if not styles:
        problems.append("style= is empty; give at least one painting")
    for s in styles:
        try:
            locate_painting(resolve_painting(str(s)))
        except (ImageError, FileNotFoundError, ValueError) as e:
            problems.append(str(e))
    blend = _get(cfg, "style_blend")
    if blend is not None and styles and len(list(blend)) != len(styles):
        problems.append(f"style_blend has {len(list(blend))} weights for {len(styles)} styles; give one per style")
    size = _get(cfg, "image_size")
    if isinstance(size, int) and not isinstance(size, bool) and 0 < size < 16:
        problems.append(f"image_size={size} is too small for VGG; use 64 or more")
    problems += _positive(cfg, "image_size") + _positive(cfg, "iterations")
    problems += _positive(cfg, "style_scale", integer=False)
    problems += _output_folder(cfg, "output", is_file=True)
    _raise(problems)


def validate_quality(cfg: DictConfig, inits: tuple[str, ...], known_inits: tuple[str, ...]) -> None:
    """scripts/quality.py: the photo folder exists, `init` is known, sizes and counts are positive,
    a writable output folder; before the network or the VGG loads."""
    problems: list[str] = []
    unknown = [i for i in inits if i not in known_inits]
    if unknown or not inits:
        problems.append(f"init={list(inits)}: must be one or more of {list(known_inits)}")
    photos = _get(cfg, "photos")
    if photos is not None and not resolve_path(photos).is_dir():
        problems.append(f"photos={photos}: no such folder (looked in {resolve_path(photos)}); "
                        "point photos at a folder of photos")
    problems += _positive(cfg, "size") + _positive(cfg, "iterations")
    n = _get(cfg, "num_photos")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 0):
        problems.append(f"num_photos={n}: must be 0 (all) or a positive integer")
    problems += _output_folder(cfg, "output", is_file=False)
    _raise(problems)
