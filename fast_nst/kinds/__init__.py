"""Network kinds. A kind is one package in here, kinds/<name>/ (its `StyleNetwork` subclass decorated
with `@register_kind`, and its network, loss terms and weight specs beside it) plus one config file in conf/model/ whose `kind:` key names it; training,
export, `Stylizer` and the scripts find it here by that name, so adding a kind edits nothing else.

Kinds in this package are imported on the first lookup of a name that is not registered yet;
kinds defined elsewhere (a plugin, a test) register themselves when their module is imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Mapping

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


def split_model_config(model: Mapping) -> tuple[type[StyleNetwork], dict]:
    """conf/model/*.yaml -> (kind class, the rest of the keys: the network's own config)."""
    model = dict(model)
    if "kind" not in model:
        raise ValueError(f"model config has no `kind` key (got keys {sorted(model)}); every conf/model/*.yaml "
                         f"names its kind, one of {', '.join(available_kinds())}")
    return get_kind(model.pop("kind")), model


__all__ = ["StyleNetwork", "StyleChoiceError", "register_kind", "get_kind", "available_kinds",
           "split_model_config", "pretrained_network", "pretrained_kinds"]
