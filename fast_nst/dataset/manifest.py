"""The job's manifest: `<output>/manifest.csv`, one row per input image.

Columns: image (path relative to input=), output (relative to output=), painting, model, seconds
(decode + stylize + write, on the worker), status, worker (host:pid@ray node), error.
Status: `ok` (written by this or an earlier run), `skipped` (found done by a rerun, and no earlier
row says more), `unreadable` (the input is not a usable image: listed, not fatal) or `failed`
(stylizing or writing failed: the job exits 1, and a rerun tries again).

While the job runs, rows are appended as results arrive and flushed, so a killed job keeps what
it learned (a half-written last line is dropped on reading). At the end the file is rewritten
atomically with one row per image: the latest row that did work, else the latest row.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from fast_nst.io.files import atomic_write

FIELDS = ("image", "output", "painting", "model", "seconds", "status", "worker", "error")
STATUSES = ("ok", "skipped", "unreadable", "failed")
MANIFEST_NAME = "manifest.csv"


def read_rows(path: Path) -> list[dict[str, str]]:
    """Every complete row (a half-written line from a killed run is left out)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for row in csv.DictReader(f):
            if None in row or any(row.get(k) is None for k in FIELDS) or row["status"] not in STATUSES:
                continue  # wrong number of fields: a line cut short
            rows.append(row)
        return rows


class ManifestLog:
    """Appends rows to the manifest as the job learns them (one writer: the driver)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file() or path.stat().st_size == 0
        cut = not new and not _ends_with_newline(path)
        self._file = open(path, "a", newline="", encoding="utf-8")
        if cut:
            self._file.write("\r\n")  # a killed run's half line stays a line of its own, dropped on reading
        self._writer = csv.DictWriter(self._file, fieldnames=FIELDS, extrasaction="ignore")
        if new:
            self._writer.writeheader()

    def write(self, rows: Iterable[Mapping[str, object]]) -> None:
        self._writer.writerows(rows)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def latest_rows(rows: Iterable[Mapping[str, str]]) -> dict[str, Mapping[str, str]]:
    """One row per image: the latest one that did work (not `skipped`), else the latest."""
    best: dict[str, Mapping[str, str]] = {}
    for row in rows:
        old = best.get(row["image"])
        if old is None or row["status"] != "skipped" or old["status"] == "skipped":
            best[row["image"]] = row
    return best


def compact(path: Path, order: Sequence[str]) -> dict[str, Mapping[str, str]]:
    """Rewrite the manifest with one row per image (images in `order` first, then any others an
    earlier run listed); returns those rows by image."""
    best = latest_rows(read_rows(path))
    listed = set(order)
    keys = [k for k in order if k in best] + sorted(k for k in best if k not in listed)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(best[k] for k in keys)

    atomic_write(path, write)
    return {k: best[k] for k in keys}
