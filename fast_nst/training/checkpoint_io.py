"""Lightning checkpoints written under a temporary name in their own folder, then renamed.

Lightning's own writer (TorchCheckpointIO, through fsspec) writes a local checkpoint to a
temporary file in the system temp folder and then *moves* it into place; when the temp folder is
on another file system (tmpfs /tmp, a node-local disk next to a network checkpoint folder) that
move is a copy, and a kill or crash during the copy leaves a torn `last.ckpt` that
`ckpt_path=last` cannot load. Here the temporary file sits beside the target, is flushed to disk,
and `os.replace` swaps it in: `last.ckpt` is always a whole checkpoint, the old or the new one.

Loading never unpickles code: `torch.load(weights_only=True)` always (Lightning would pass
None, which is only safe while torch's default stays True, and False for remote files), and a
file holding Python objects beyond tensors and plain containers is refused with a ConfigError.

Wired in conf/trainer/default.yaml (`plugins`).
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from fast_nst.io.errors import ConfigError, one_line
from fast_nst.io.files import atomic_write

_STARTED = time.time()  # temp files older than this process were left by a killed earlier one


def _unreadable(path, e: BaseException) -> ConfigError:
    # torch's weights-only refusal is paragraphs of advice; the line that says what it met is enough
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    what = next((ln for ln in lines if ln.startswith("Unsupported")), None)
    reason = f"{type(e).__name__}: {what}" if what else one_line(e)
    return ConfigError(f"ckpt_path={path}: not a readable checkpoint ({reason}); the file is damaged or "
                       "incomplete (cut short while copying?). Resume from another one in its folder (step*.ckpt), "
                       "or start again without ckpt_path")


def _save_durably(checkpoint: dict[str, Any], tmp: Path) -> None:
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())  # the data reaches the disk before the name points at it


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO for local paths whose saves are atomic (see the module docstring).
    Loads with weights_only=True only; removing is Lightning's own."""

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        try:
            checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            if "global" not in str(e).lower():  # not a pickle that names Python objects: just damaged
                raise _unreadable(path, e) from e
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"ckpt_path={path}: refused to load: it holds Python objects beyond tensors and plain "
                f"containers, and unpickling them could run arbitrary code ({first[:200]}). "
                "Resume only from checkpoints fast_nst wrote (checkpoints/runs/<style>/*.ckpt); to "
                "stylize, give stylize.py an exported .safetensors") from e
        except Exception as e:  # empty, truncated, not a checkpoint at all
            raise _unreadable(path, e) from e
        if not (isinstance(checkpoint, dict) and {"state_dict", "global_step"} & checkpoint.keys()):
            raise ConfigError(
                f"ckpt_path={path}: not a Lightning training checkpoint (no state_dict and step; an exported "
                ".safetensors?). Resume from checkpoints/runs/<name>/last.ckpt or step*.ckpt; to continue "
                "from an export, give it as init_from= (experiment=add_style)")
        return checkpoint

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options (local files only)")
        if "://" in str(path):  # remote storage: fsspec's own transaction is the tool there
            return super().save_checkpoint(checkpoint, path)
        path = Path(path)
        atomic_write(path, lambda tmp: _save_durably(checkpoint, tmp))
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            try:
                if stale.stat().st_mtime < _STARTED:
                    stale.unlink()
            except FileNotFoundError:
                pass
