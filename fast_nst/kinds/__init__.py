"""Network kinds. A kind is one package in here, kinds/<name>/ (its `StyleNetwork` subclass decorated
with `@register_kind`, and its network, loss terms and weight specs beside it) plus one config file in conf/model/ whose `kind:` key names it; training,
export, `Stylizer` and the scripts find it here by that name, so adding a kind edits nothing else.

Kinds in this package are imported on the first lookup of a name that is not registered yet;
kinds defined elsewhere (a plugin, a test) register themselves when their module is imported.
`load_network(path)` rebuilds an export's network through its kind (the file format itself is
fast_nst.io.export, which knows no kind).

May import: fast_nst.io, fast_nst.weights, fast_nst.models.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Mapping

import torch

from fast_nst.io.errors import ConfigError, FastNSTError, one_line
from fast_nst.io.export import load_export
from fast_nst.kinds.base import StyleChoiceError, StyleNetwork

_KINDS: dict[str, type[StyleNetwork]] = {}
_discovered = False


def register_kind(cls: type[StyleNetwork]) -> type[StyleNetwork]:
    """Class decorator: make `cls` buildable from configs and exports under `cls.kind`."""
    if not (isinstance(cls, type) and issubclass(cls, StyleNetwork)) or not cls.kind:
        raise TypeError(f"{cls!r}: a kind must subclass StyleNetwork and set `kind = \"name\"`")
    other = _KINDS.get(cls.kind)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"network kind {cls.kind!r} is already registered by {other.__module__}.{other.__qualname__}")
    _KINDS[cls.kind] = cls
    return cls


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        for m in pkgutil.iter_modules(__path__):
            if m.name != "base":
                importlib.import_module(f"{__name__}.{m.name}")


def available_kinds() -> list[str]:
    _discover()
    return sorted(_KINDS)


def get_kind(name: str) -> type[StyleNetwork]:
    if name not in _KINDS:
        _discover()
    if name not in _KINDS:
        raise ValueError(f"unknown network kind {name!r}; known: {', '.join(available_kinds())}. A kind is "
                         "a module in fast_nst/kinds/ whose StyleNetwork subclass has @register_kind")
    return _KINDS[name]


def pretrained_network(name: str):
    """(network, ExportInfo) of the pretrained weights of kind `name` (e.g. "adain"), or None when
    no kind of that name ships any."""
    if name not in available_kinds():
        return None
    return get_kind(name).pretrained()


def pretrained_kinds() -> list[str]:
    """Kinds that `ckpt=<kind>` loads with no export file (they fetch their own weights)."""
    return [k for k in available_kinds() if _KINDS[k].pretrained.__func__ is not StyleNetwork.pretrained.__func__]


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(network, info): the export's kind rebuilt with its weights, in eval mode on `device`.
    Whatever is wrong with the file (unreadable, a kind this fast_nst does not have, weights that
    do not fit the network its metadata describes) is a ConfigError naming it and what to do."""
    info, tensors = load_export(path, device)
    try:
        kind = get_kind(info.kind)
    except ValueError as e:
        raise ConfigError(f"{path}: {one_line(e, 400)}. Was it written by a newer fast_nst or a plugin kind? "
                          "Update fast_nst, or import the module that registers the kind") from e
    try:
        net = kind.from_export(info, tensors)
    except FastNSTError:
        raise  # already a message of ours (e.g. weights the kind fetches could not be had: WeightsError)
    except Exception as e:
        raise ConfigError(f"{path}: its weights do not fit the {info.kind} network its metadata describes "
                          f"({one_line(e)}); the file was damaged or edited: export it again with train.py, "
                          "or use another checkpoint") from e
    return net.to(device).eval(), info


def split_model_config(model: Mapping) -> tuple[type[StyleNetwork], dict]:
    """conf/model/*.yaml -> (kind class, the rest of the keys: the network's own config)."""
    model = dict(model)
    if "kind" not in model:
        raise ValueError(f"model config has no `kind` key (got keys {sorted(model)}); every conf/model/*.yaml "
                         f"names its kind, one of {', '.join(available_kinds())}")
    return get_kind(model.pop("kind")), model


__all__ = ["StyleNetwork", "StyleChoiceError", "register_kind", "get_kind", "available_kinds",
           "split_model_config", "pretrained_network", "pretrained_kinds", "load_network"]
