"""Files written safely: atomic writes (a crash never leaves half a file), the last guard that no
output replaces an input of this run, a full disk as one line, and file hashes."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def _umask_file_mode() -> int:
    """The mode `open()` gives a new file here: 0666 less the umask (0644 under the usual 022).
    Read once, at import, before any thread could create a file while the umask is probed."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _umask_file_mode()

# Every file this process decoded as an input (images here, videos in fast_nst.stylize.video), by
# hash((device, inode, size, mtime)): `publish` refuses to replace one, whatever path, link or
# spelling names it, so no tool overwrites a user's original. Size and mtime keep a reused inode
# of a deleted file from looking like an input.
_INPUTS: set[int] = set()


def _identity(st: os.stat_result) -> int:
    return hash((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))


def note_input(path: str | os.PathLike) -> None:
    """Record `path` as an input of this process (see `publish`)."""
    try:
        _INPUTS.add(_identity(os.stat(path)))
    except OSError:
        pass


def refuse_input(path: str | os.PathLike) -> None:
    """OutputIsInputError if `path` is a file this process read as an input."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if _identity(st) in _INPUTS:
        from fast_nst.io.errors import OutputIsInputError

        raise OutputIsInputError(f"{path}: is an input of this run; refusing to write over it (the original is "
                                 "untouched). Choose an output name or folder that is not an input")


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """The last step of every atomic write: the finished temporary file gets an ordinary file's
    mode (FILE_MODE; mkstemp makes 0600) and is renamed over `path`, unless `path` is an input."""
    refuse_input(path)
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def is_disk_full(e: BaseException) -> bool:
    """A write error caused by a full disk or quota: ENOSPC/EDQUOT, as an errno or in the message
    of a library that drops the errno (torch.save, safetensors, FFmpeg)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return any(s in text for s in ("No space left on device", "Disk quota exceeded", "os error 28",
                                   "os error 122", "[Errno 28]", "[Errno 122]"))


def disk_full_error(path: str | os.PathLike):
    """The one-line error for a write to `path` that ran out of space."""
    from fast_nst.io.errors import DiskFullError

    folder = Path(path).parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MB free there now"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"{path}: no space left on the disk holding {folder} ({free}); nothing half-written "
                         "was left. Free some space, or write to another disk (the output= / export.dir= "
                         "option), then run the same command again")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` into a temporary file in `path`'s folder, then rename it over `path`: a crash
    or Ctrl-C never leaves a half-written image, export or report. A full disk is a DiskFullError
    (one line, what to do); an input of this run is never replaced (`publish`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        publish(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full_error(path) from e
        raise
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MB chunks (weights, paintings, exports)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
