#!/usr/bin/env python
"""Download and unpack MS-COCO images for `data=coco` (needs internet; ~13 GB for train2014).

    python tools/download_coco.py --dest data/coco                 # train2014 (the paper's set)
    python tools/download_coco.py --dest data/coco --split train2017

Resumable: an interrupted download continues from its `.part` file (HTTP Range). Checked: every
member's CRC32 is verified (`zipfile.testzip`) before unpacking, the archive's sha256 is printed and
stored next to it, and `--sha256` makes a mismatch fatal. Then: python train.py data=coco
(COCO_DIR=<dest> if not data/coco).
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
import zipfile
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn, TimeRemainingColumn

from fast_nst.io.files import atomic_write, file_sha256

BASE = "http://images.cocodataset.org/zips/"
SPLITS = {"train2014": 82783, "val2014": 40504, "train2017": 118287, "val2017": 5000}


def download(url: str, dest: Path, chunk: int = 1 << 20) -> Path:
    part = dest.with_suffix(dest.suffix + ".part")
    if dest.exists():
        print(f"{dest} already downloaded")
        return dest
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        if have and r.status != 206:  # server ignored Range: start over
            have = 0
        total = have + int(r.headers.get("Content-Length", 0))
        with open(part, "ab" if have else "wb") as f, Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task(dest.name, total=total or None, completed=have)
            while block := r.read(chunk):
                f.write(block)
                bar.advance(task, len(block))
    part.rename(dest)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", default="data/coco", help="target folder (default: data/coco)")
    ap.add_argument("--split", default="train2014", choices=sorted(SPLITS), help="which image set")
    ap.add_argument("--sha256", help="expected sha256 of the zip; a mismatch aborts")
    ap.add_argument("--keep-zip", action="store_true", help="keep the archive after unpacking")
    a = ap.parse_args(argv)
    dest = Path(a.dest)
    dest.mkdir(parents=True, exist_ok=True)
    out_dir = dest / a.split
    if out_dir.is_dir() and sum(1 for _ in out_dir.glob("*.jpg")) >= SPLITS[a.split]:
        print(f"{out_dir} is complete ({SPLITS[a.split]} images)")
        return 0
    zpath = download(BASE + f"{a.split}.zip", dest / f"{a.split}.zip")
    digest = file_sha256(zpath)
    atomic_write(dest / f"{a.split}.zip.sha256", lambda tmp: tmp.write_text(f"{digest}  {zpath.name}\n"))
    print(f"sha256 {digest}")
    if a.sha256 and digest != a.sha256.lower():
        print(f"error: {zpath} sha256 is {digest}, expected {a.sha256}; delete it and run again",
              file=sys.stderr)
        return 1
    with zipfile.ZipFile(zpath) as z:
        bad = z.testzip()
        if bad:
            print(f"error: {zpath}: member {bad} fails its CRC check; delete the zip and run again",
                  file=sys.stderr)
            return 1
        z.extractall(dest)
    n = sum(1 for _ in out_dir.glob("*.jpg"))
    print(f"{out_dir}: {n} images")
    if not a.keep_zip:
        zpath.unlink()
    return 0 if n >= SPLITS[a.split] else 1


if __name__ == "__main__":
    sys.exit(main())
