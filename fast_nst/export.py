"""Per-style export: network weights plus the metadata needed to rebuild and credit them.

Format: one safetensors file. Tensors are the TransformerNet state dict (float32); metadata holds
JSON strings under `fast_nst.*` keys. Written atomically: a crash never leaves a torn file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fast_nst.errors import ConfigError
from fast_nst.images import atomic_write
from fast_nst.models.transformer import TransformerNet

FORMAT = "fast_nst.transformer.v1"


def _version() -> str:
    from fast_nst import __version__

    return __version__


def export_network(net: TransformerNet, path: str | os.PathLike, *, style: dict | None = None,
                   loss: dict | None = None, vgg_weights: str | None = None,
                   extra: dict[str, Any] | None = None) -> Path:
    meta = {
        "format": FORMAT,
        "fast_nst.version": _version(),
        "fast_nst.network": json.dumps(net.config),
        "fast_nst.style": json.dumps(style or {}),
        "fast_nst.loss": json.dumps(loss or {}),
        "fast_nst.vgg_weights": vgg_weights or "unknown",
        "fast_nst.extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
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


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if _is_pickle(path):
        raise ConfigError(f"{path}: a PyTorch pickle (a Lightning .ckpt or torch.save file), refused unread: "
                         "unpickling a file can run arbitrary code, so fast_nst only loads .safetensors "
                         "exports (written by train.py at the end of training, to checkpoints/<style>.safetensors). "
                         "To resume training from a .ckpt, give it to train.py as ckpt_path=")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:
        raise ConfigError(f"{path}: not a readable safetensors file ({e}); was the export interrupted? "
                         "Re-export it or point ckpt= at another file") from e
    if raw.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a fast_nst export (format={raw.get('format')!r}, "
                         f"expected {FORMAT!r}). Lightning .ckpt files are for resuming; "
                         "stylize with the exported .safetensors")
    out: dict[str, Any] = dict(raw)
    for k in ("fast_nst.network", "fast_nst.style", "fast_nst.loss", "fast_nst.extra"):
        out[k.split(".", 1)[1]] = json.loads(raw.get(k, "{}"))
    out["vgg_weights"] = raw.get("fast_nst.vgg_weights", "unknown")
    out["version"] = raw.get("fast_nst.version", "unknown")
    return out


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[TransformerNet, dict]:
    meta = read_metadata(path)
    net = TransformerNet(**meta["network"])
    from safetensors.torch import load_file

    net.load_state_dict(load_file(str(path), device=str(device)))
    return net.to(device).eval(), meta
