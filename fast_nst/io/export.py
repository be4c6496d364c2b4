"""Exports: one `.safetensors` file per trained network, weights plus the metadata to rebuild,
credit and evaluate it.

Schema v2 (`format` = "fast_nst.export.v2"). Tensors: `net.export_tensors()` (float32). Metadata
(safetensors keeps str -> str; values below are JSON unless noted):

  format               "fast_nst.export.v2" (plain string)
  fast_nst.version     the fast_nst version that wrote it (plain string)
  fast_nst.kind        network kind, e.g. "johnson", "cin" (plain string; fast_nst/kinds/)
  fast_nst.network     the kind's config: kind(styles, **network) rebuilds the network
  fast_nst.styles      [{name, image, weight, title, credit, sha256}, ...] the paintings, in the
                       network's order (image: the path trained from; locate_painting finds it again)
  fast_nst.loss        the `loss` config it was trained with
  fast_nst.loss_net    the `loss_net` config (arch, weights, pooling)
  fast_nst.vgg_weights the VGG weight source actually used (plain string)
  fast_nst.model_card  free-form dict: recipe, steps, training photos, wall time, machine, quality...
  fast_nst.thumbnails  {painting name: base64 JPEG}, small previews (optional)

v1 files (`fast_nst.transformer.v1`: per-style Johnson nets) are read as v2 with kind "johnson".
Every write is atomic: a crash never leaves a torn file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fast_nst.io.errors import ConfigError, one_line
from fast_nst.io.files import atomic_write
from fast_nst.io.paintings import Painting, locate_painting, thumbnail_b64

FORMAT = "fast_nst.export.v2"
FORMAT_V1 = "fast_nst.transformer.v1"
_JSON_KEYS = ("network", "styles", "loss", "loss_net", "model_card", "thumbnails")


def _version() -> str:
    from fast_nst.io.version import __version__

    return __version__


@dataclass
class ExportInfo:
    """An export's metadata (v1 files upgraded on reading)."""

    kind: str
    network: dict
    styles: list[Painting]
    loss: dict = field(default_factory=dict)
    loss_net: dict = field(default_factory=dict)
    vgg_weights: str = "unknown"
    version: str = "unknown"
    model_card: dict = field(default_factory=dict)
    thumbnails: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    path: Path | None = None

    @property
    def style_names(self) -> list[str]:
        return [p.name for p in self.styles]

    def metadata(self) -> dict[str, str]:
        """The safetensors metadata of this info (always the current format)."""
        values = {"network": self.network, "styles": [p.to_dict() for p in self.styles], "loss": self.loss,
                  "loss_net": self.loss_net, "model_card": self.model_card, "thumbnails": self.thumbnails}
        meta = {"format": FORMAT, "fast_nst.version": self.version, "fast_nst.kind": self.kind,
                "fast_nst.vgg_weights": self.vgg_weights}
        meta.update({f"fast_nst.{k}": json.dumps(v) for k, v in values.items()})
        return meta


def export_network(net, path: str | os.PathLike, *, loss: dict | None = None, loss_net: dict | None = None,
                   vgg_weights: str | None = None, model_card: dict | None = None,
                   thumbnail_size: int = 128) -> Path:
    """Write `net` (a StyleNetwork) and its metadata to `path` atomically. `thumbnail_size` > 0
    embeds a JPEG preview of each painting whose file is on this machine."""
    thumbnails = {}
    if thumbnail_size > 0:
        for p in net.styles:
            try:
                thumbnails[p.name] = thumbnail_b64(locate_painting(p), thumbnail_size)
            except (FileNotFoundError, ValueError):
                pass  # a preview is optional; the record (name, file, sha256) is what matters
    info = ExportInfo(kind=net.kind, network=dict(net.config), styles=list(net.styles), loss=dict(loss or {}),
                      loss_net=dict(loss_net or {}), vgg_weights=vgg_weights or "unknown", version=_version(),
                      model_card=dict(model_card or {}), thumbnails=thumbnails)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in net.export_tensors().items()}
    return _write(path, tensors, info)


def _write(path: str | os.PathLike, tensors: dict[str, torch.Tensor], info: ExportInfo) -> Path:
    meta = info.metadata()
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _is_pickle(path: Path) -> bool:
    """torch.save writes a zip (starts with PK) or, in its legacy format, a raw pickle (protocol
    2+ starts with 0x80). A safetensors file starts with an 8-byte header length, then its JSON
    header's `{`, which tells it apart even when the length's bytes look like either."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return head[8:9] != b"{" and (head[:2] == b"PK" or head[:1] == b"\x80")


def _raw_metadata(path: Path) -> dict[str, str]:
    if _is_pickle(path):
        raise ConfigError(f"{path}: a PyTorch pickle (a Lightning .ckpt or torch.save file), refused unread: "
                         "unpickling a file can run arbitrary code, so fast_nst only loads .safetensors "
                         "exports (written by train.py at the end of training, to checkpoints/<name>.safetensors). "
                         "To resume training from a .ckpt, give it to train.py as ckpt_path=")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:
        raise ConfigError(f"{path}: not a readable safetensors file ({e}); was the export interrupted? "
                         "Re-export it or point ckpt= at another file") from e


def read_export(path: str | os.PathLike) -> ExportInfo:
    """The metadata of an export, v1 or v2 (no tensors are read)."""
    path = Path(path)
    return info_from_metadata(_raw_metadata(path), path)


def info_from_metadata(raw: dict[str, str], path: Path | None = None) -> ExportInfo:
    """An ExportInfo from an export's string metadata (`format` + `fast_nst.*`, v1 or v2), as a
    .safetensors header or an ONNX graph's metadata_props (fast_nst.stylize.onnx) hold it."""
    fmt = raw.get("format")
    try:
        if fmt == FORMAT:
            values = {k: json.loads(raw.get(f"fast_nst.{k}", "{}")) for k in _JSON_KEYS}
            return ExportInfo(kind=raw["fast_nst.kind"], network=values["network"],
                              styles=[Painting.from_dict(p) for p in values["styles"] or []],
                              loss=values["loss"], loss_net=values["loss_net"],
                              vgg_weights=raw.get("fast_nst.vgg_weights", "unknown"),
                              version=raw.get("fast_nst.version", "unknown"), model_card=values["model_card"],
                              thumbnails=values["thumbnails"] or {}, format=fmt, path=path)
        if fmt == FORMAT_V1:
            return _upgrade_v1(raw, path)
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"{path}: {fmt} export with broken metadata ({type(e).__name__}: {e}); re-export it") from e
    raise ConfigError(f"{path}: not a fast_nst export (format={fmt!r}, expected {FORMAT!r} or {FORMAT_V1!r}). "
                     "Lightning .ckpt files are for resuming; stylize with the exported .safetensors")


def _upgrade_v1(raw: dict[str, str], path: Path) -> ExportInfo:
    """v1: a per-style Johnson net; `style` {name, image, weight}, loss_net inside `extra`."""
    style = json.loads(raw.get("fast_nst.style", "{}"))
    extra = json.loads(raw.get("fast_nst.extra", "{}"))
    loss_net = extra.pop("loss_net", None) or {}
    card = {"steps": extra.pop("global_step", None), **extra, "upgraded_from": FORMAT_V1}
    styles = [_with_bundled_credit(Painting.from_dict({"weight": 1.0, **style}))] if style.get("image") else []
    return ExportInfo(kind="johnson", network=json.loads(raw["fast_nst.network"]), styles=styles,
                      loss=json.loads(raw.get("fast_nst.loss", "{}")), loss_net=loss_net,
                      vgg_weights=raw.get("fast_nst.vgg_weights", "unknown"),
                      version=raw.get("fast_nst.version", "unknown"),
                      model_card={k: v for k, v in card.items() if v is not None}, format=FORMAT_V1, path=path)


def _with_bundled_credit(p: Painting) -> Painting:
    """v1 recorded no title/credit: take them from the bundled painting of the same name and file."""
    from dataclasses import replace

    from fast_nst.io.paintings import STYLE_CONF, resolve_painting

    if not (STYLE_CONF / f"{p.name}.yaml").is_file():
        return p
    bundled = resolve_painting(p.name)
    if bundled.file != p.file:
        return p
    return replace(p, title=p.title or bundled.title, credit=p.credit or bundled.credit)


def load_export(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[ExportInfo, dict[str, torch.Tensor]]:
    """(metadata, tensors) of an export; a file whose tensors cannot be read is a ConfigError
    naming it."""
    info = read_export(path)
    try:
        return info, load_file(str(path), device=str(device))
    except Exception as e:
        raise ConfigError(f"{path}: its weights cannot be read ({one_line(e)}); the file is damaged or incomplete "
                          "(an interrupted copy or download?): copy or export it again") from e


def update_model_card(path: str | os.PathLike, updates: dict[str, Any], *, replace: bool = False) -> ExportInfo:
    """Merge `updates` into the model card of an existing export (or replace the card), rewriting
    the file atomically; the tensors are written back unchanged. A v1 file is rewritten as v2
    (same tensors, same outputs). Returns the new info.

        update_model_card("checkpoints/udnie.safetensors", {"quality": {"median_iterations": 52}})
    """
    path = Path(path)
    info, tensors = load_export(path)
    json.dumps(updates)  # fail before writing if something is not JSON-serialisable
    info.model_card = dict(updates) if replace else {**info.model_card, **updates}
    info.format = FORMAT
    _write(path, tensors, info)
    return read_export(path)


@dataclass
class TrainingIngredients:
    """What rebuilds the objective an export was trained against, for one of its paintings."""

    loss: dict
    loss_net: dict
    painting: Painting
    painting_file: Path
    style_weight_scale: float  # the painting's multiplier of loss.style_weight
    style: str                 # the painting's name (stylize with style=this)


def training_ingredients(info: ExportInfo, style: str | None = None, style_image: str | os.PathLike | None = None,
                         search: list[str | os.PathLike] = ()) -> TrainingIngredients:
    """Loss config, loss-network config, painting file (found on this machine by name and sha256,
    see `locate_painting`) and style-weight multiplier of one painting of the export (`style`;
    required when it has several). `style_image` replaces the painting's file."""
    where = info.path or "the export"
    if not info.loss or not info.loss_net:
        raise ValueError(f"{where} carries no loss/loss_net metadata (exported by an older version?); "
                         "re-export it with train.py")
    if not info.styles:
        raise ValueError(f"{where} records no painting; pass style_image=PAINTING")
    names = info.style_names
    if style is None and len(names) > 1:
        raise ValueError(f"{where} holds {len(names)} paintings; choose one with style= ({', '.join(names)})")
    if style is not None and style not in names:
        raise ValueError(f"style={style}: {where} holds {', '.join(names)}")
    painting = info.styles[names.index(style) if style else 0]
    file = Path(style_image) if style_image else locate_painting(painting, search)
    return TrainingIngredients(loss=info.loss, loss_net=info.loss_net, painting=painting, painting_file=file,
                               style_weight_scale=painting.weight, style=painting.name)
