"""The models the page offers: every export and ONNX graph in a folder, read from its metadata
only (no weights loaded), plus the pretrained kinds (`find_models`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.io.paintings import Painting
from fast_nst.io.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".safetensors", ".onnx")


@dataclass(frozen=True)
class ModelEntry:
    """One model of the models folder, from its metadata (weights are loaded on first use)."""

    path: Path
    kind: str
    styles: tuple[str, ...]            # the paintings it learned (empty for arbitrary-style kinds)
    arbitrary: bool                    # takes any painting as an image (style_image=)
    runtime: str                       # "PyTorch" or "ONNX Runtime"
    thumbnails: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    paintings: tuple[Painting, ...] = field(default=(), compare=False, hash=False)  # their records (title, file)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def label(self) -> str:
        if self.arbitrary:
            what = "any painting" + (", pretrained" if not self.path.suffix else "")
        elif len(self.styles) > 1:
            what = f"{len(self.styles)} paintings"
        else:
            what = self.kind
        onnx = ", ONNX" if self.path.suffix.lower() == ".onnx" else ""
        return f"{self.name} ({what}{onnx})"


def _kind_is_arbitrary(kind: str) -> bool:
    from fast_nst.kinds import get_kind

    return bool(getattr(get_kind(kind), "arbitrary_style", False))


def is_export_graph(path: Path) -> bool:
    """A `.onnx` written beside an export (`<name>.onnx`, `<name>_int8.onnx` next to `<name>.safetensors`):
    one of that export's runtimes (the `runtime` option), not a model of its own."""
    if path.suffix.lower() != ".onnx":
        return False
    stem = path.stem[: -len("_int8")] if path.stem.endswith("_int8") else path.stem
    return path.with_name(f"{stem}.safetensors").is_file()


def read_model_entry(path: Path) -> ModelEntry:
    """The entry of one model file; raises ValueError (or a FastNSTError) when it is not one."""
    if path.suffix.lower() == ".onnx":
        from fast_nst.stylize.onnx import read_onnx_info

        info = read_onnx_info(path)
        if info is None:  # a bare graph: one unnamed painting
            return ModelEntry(path, "onnx", (path.stem,), False, "ONNX Runtime")
        arbitrary = _kind_is_arbitrary(info.kind)
        return ModelEntry(path, info.kind, () if arbitrary else tuple(info.style_names), arbitrary, "ONNX Runtime",
                          dict(info.thumbnails), () if arbitrary else tuple(info.styles))
    from fast_nst.io.export import read_export

    info = read_export(path)
    arbitrary = _kind_is_arbitrary(info.kind)
    return ModelEntry(path, info.kind, () if arbitrary else tuple(info.style_names), arbitrary, "PyTorch",
                      dict(info.thumbnails), () if arbitrary else tuple(info.styles))


def pretrained_entry(kind: str) -> ModelEntry:
    """The entry of a kind's own pretrained weights (`Stylizer.load(kind)`, fetched on first use)."""
    from fast_nst.kinds import pretrained_kinds

    if kind not in pretrained_kinds():
        raise ConfigError(f"pretrained={kind}: no kind of that name ships weights; choose among "
                          f"{', '.join(pretrained_kinds()) or 'none'}")
    arbitrary = _kind_is_arbitrary(kind)
    return ModelEntry(Path(kind), kind, (), arbitrary, "PyTorch")


def find_models(models_dir: str | os.PathLike, pretrained: list[str] | tuple[str, ...] = ()
                ) -> tuple[list[ModelEntry], list[str]]:
    """(models, problems): the `pretrained` kinds' own networks first (no file: Stylizer.load(kind)),
    then every readable *.safetensors / *.onnx of `models_dir` (sorted by name), and one line per
    file that is not a usable model (shown on the page, so a broken file is noticed rather than
    silently missing)."""
    d = Path(models_dir).expanduser()
    if not d.is_absolute() and not d.is_dir() and (PROJECT_ROOT / d).is_dir():
        d = PROJECT_ROOT / d  # `python app.py` from another folder still finds the project's checkpoints/
    if not d.is_dir():
        raise MissingPathError(f"models_dir={models_dir}: no such folder. Point it at a folder of exported "
                               "models (.safetensors from train.py, .onnx from tools/export_onnx.py)")
    models, problems = [pretrained_entry(k) for k in pretrained], []
    files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in MODEL_SUFFIXES)
    for p in [f for f in files if not is_export_graph(f)]:
        try:
            models.append(read_model_entry(p))
        except Exception as e:  # noqa: BLE001 - one bad file must not hide the others
            problems.append(f"{p.name}: skipped ({type(e).__name__}: {e})")
            log.warning("models_dir: %s", problems[-1])
    if not models:
        raise ConfigError(f"models_dir={d}: no usable model (*.safetensors, *.onnx) in it"
                          + (f"; {'; '.join(problems)}" if problems else "")
                          + ". Train one with: python train.py style=starry_night")
    return models, problems
