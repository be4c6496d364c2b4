"""Config checks that run before any slow work (VGG weights, data scan, model load): each bad
value is reported at once as a ConfigError naming the option and what to do."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fast_nst.io.errors import ConfigError
from fast_nst.io.images import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ImageError, read_header, resolve_path
from fast_nst.io.paintings import bundled_names


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


def _real(p: str | os.PathLike) -> Path:
    """The absolute path with every link in its existing part resolved (the file it would be)."""
    return Path(os.path.normcase(os.path.realpath(os.path.expanduser(str(p)))))


def _glob_matches(path: Path, pattern: str) -> bool:
    """Whether glob(pattern, recursive=True) would list `path` (both made absolute): part by part,
    `**` standing for any number of folders."""
    import fnmatch

    given = Path(os.path.abspath(os.path.expanduser(pattern))).parts
    fixed = next((k for k, part in enumerate(given) if any(c in part for c in "*?[")), len(given))
    pat = _real(Path(*given[:fixed])).parts + given[fixed:]  # links in the folder part resolved, as in `path`
    parts = path.parts

    def match(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(parts)
        if pat[i] == "**":
            return any(match(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and fnmatch.fnmatchcase(parts[j], pat[i]) and match(i + 1, j + 1)

    return match(0, 0)


def refuse_overwriting_inputs(outputs, inputs=(), folders=(), patterns=(), *, option: str = "output",
                              given: str | None = None, what: str = "input", fix: str | None = None) -> None:
    """The guard every tool that writes outputs from inputs runs before any work: no output may
    be an input (the same file through any link, `..` or spelling), nor an input folder, nor lie
    inside a folder that is searched for inputs (`folders`) or match a glob of them (`patterns`),
    where a second run would take the first run's outputs as inputs (out/out/...). Raises
    OutputIsInputError (exit 2) naming the output, the input and what to do; `given`: the option's
    value as the user wrote it, when the outputs are files planned inside it; `fix`: what to do
    (default: choose another output).

    (fast_nst.io.files.publish, under every atomic write, also refuses to replace a file this
    process decoded as an input: the last line of defence for tools that do not call this.)"""
    from fast_nst.io.errors import OutputIsInputError

    same_file: dict[tuple[int, int], Path] = {}
    by_path: dict[Path, Path] = {}
    for i in inputs:
        by_path[_real(i)] = Path(i)
        try:
            st = os.stat(i)
            same_file[(st.st_dev, st.st_ino)] = Path(i)
        except OSError:
            pass
    scanned = [(_real(f), Path(f)) for f in folders]
    fix = fix or f"choose an {option} that is not an {what} and not inside an {what} folder"
    for out in outputs:
        name = f"{option}={out}" if given in (None, str(out)) else f"{option}={given}: {out}"
        real = _real(out)
        hit = by_path.get(real)
        if hit is None:
            try:
                st = os.stat(out)
                hit = same_file.get((st.st_dev, st.st_ino))
            except OSError:
                pass
        if hit is not None:
            raise OutputIsInputError(f"{name}: would be written over the {what} {hit}, destroying the "
                                     f"original; {fix}")
        for folder, given in scanned:
            if real == folder or folder in real.parents:
                raise OutputIsInputError(
                    f"{name}: {'is' if real == folder else 'lies inside'} the {what} folder {given}, which is "
                    f"searched for {what}s (recursively), so the next run would take this run's outputs as "
                    f"{what}s; {fix}")
        for pattern in patterns:
            if _glob_matches(real, pattern):
                raise OutputIsInputError(
                    f"{name}: matches the {what} pattern {pattern}, so the next run would take this "
                    f"run's outputs as {what}s; {fix}")


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} config problems: " + "; ".join(problems))


def validate_train(cfg: DictConfig) -> None:
    problems: list[str] = []
    image = _get(cfg, "style.image")
    if image is None and _get(cfg, "style") is not None and not cfg.get("styles"):
        problems.append("style.image is required: give the painting's file with style.image=PATH "
                        "(e.g. python train.py experiment=new_painting style.image=my_painting.jpg)")
    elif image is not None and not resolve_path(image).is_file():
        problems.append(f"style.image={image}: no such file; give a painting with style.image=PATH "
                        f"(and style.name=NAME), or pick a bundled one: style={{{','.join(bundled_names())}}}")
    elif image is not None:
        try:
            read_header(image)
        except ImageError as e:
            problems.append(f"style.image={image}: {e}")
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
    roots = [resolve_path(r) for r in (_get(cfg, "data.root"), _get(cfg, "data.val_root")) if r is not None]
    try:
        run_dir = _get(cfg, "run_dir")  # Hydra's output folder: resolvable only inside a Hydra run
    except Exception:  # noqa: BLE001 - composed without Hydra's runtime (tests, the API)
        run_dir = None
    if run_dir is not None and roots:  # its sample grids are PNGs: the next run would train on them
        refuse_overwriting_inputs([run_dir], folders=roots, option="run_dir", what="photo",
                                  fix="start train.py from another folder, or give hydra.run.dir=DIR outside the photos")


def validate_stylize(cfg: DictConfig, runtimes: tuple[str, ...]) -> None:
    """stylize.py: sizes positive, a known runtime (`runtimes`: fast_nst.stylize.runtimes.RUNTIMES),
    a JPEG quality, a writable output folder; before the network loads."""
    _get(cfg, "ckpt"), _get(cfg, "input")  # required values first
    problems = _positive(cfg, "max_size", allow_none=True) + _positive(cfg, "batch_size")
    problems += _positive(cfg, "style_size", allow_none=True) + _positive(cfg, "max_pixels", allow_none=True)
    runtime = _get(cfg, "runtime")
    if runtime is not None and runtime not in runtimes:
        problems.append(f"runtime={runtime}: choose one of {', '.join(runtimes)}")
    q = _get(cfg, "quality")
    if q is not None and not (isinstance(q, int) and 1 <= q <= 100):
        problems.append(f"quality={q}: JPEG quality must be an integer from 1 to 100")
    out = _get(cfg, "output")
    if out is not None:
        folder = Path(str(out)).parent if output_names_a_file(out) else Path(str(out))
        problems += _writable_dir("output", folder)
    _raise(problems)


def validate_dataset(cfg: DictConfig, formats) -> None:
    """stylize-dataset (fast_nst.dataset): sizes and counts positive, strength in [0, 1], a known
    format (`formats`: fast_nst.dataset.plan.FORMATS), a JPEG quality, a writable output folder;
    before Ray or the network starts."""
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
    if _get(cfg, "format") not in formats:
        problems.append(f"format={_get(cfg, 'format')}: must be one of {', '.join(formats)}")
    q = _get(cfg, "quality")
    if not (isinstance(q, int) and 1 <= q <= 100):
        problems.append(f"quality={q}: JPEG/WebP quality must be an integer from 1 to 100")
    problems += _writable_dir("output", _get(cfg, "output"))
    _raise(problems)


def output_names_a_file(output) -> bool:
    """stylize.py's output= names one file (an image or a video, by its extension), else a folder."""
    return Path(str(output)).suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS


def _output_folder(cfg: DictConfig, key: str, is_file: bool) -> list[str]:
    out = _get(cfg, key)
    if out is None:
        return []
    return _writable_dir(key, Path(str(out)).parent if is_file else Path(str(out)))


def validate_optimize(cfg: DictConfig) -> None:
    """optimize.py: the photo and paintings exist, sizes and counts are positive, one blend weight
    per painting, a writable output folder; before the VGG loads."""
    from fast_nst.io.paintings import locate_painting, resolve_painting

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
    """fast-nst quality: the photo folder exists, `init` is known, sizes and counts are positive,
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
    if photos is not None and resolve_path(photos).is_dir():  # its plots are PNGs: photos of the next run
        out = _get(cfg, "output")
        refuse_overwriting_inputs([out if out is not None else Path("outputs") / "quality"],
                                  folders=[resolve_path(photos)], what="photo")
