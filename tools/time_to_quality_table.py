#!/usr/bin/env python
"""The time-to-quality table: warm start x painting x minutes -> equivalent L-BFGS
iterations from noise (fast-nst quality time_to_quality on each recipe), then one Markdown table.

    python tools/time_to_quality_table.py --photos TRAIN_DIR --heldout TEST_DIR \
        --paintings la_muse.jpg mosaic.jpg candy.jpg --out outputs/ttq_table
    python tools/time_to_quality_table.py --out outputs/ttq_table --tabulate   # table of finished runs

Starts (docs/training/own-painting.md): a = warm_start=rows, b = rows_then_all, c = convs
(experiment=new_painting's default), d = from scratch (experiment=cpu_zoo). Each recipe runs once per
painting for its budget (--minutes, e.g. c=30 a=10); a run already finished in --out is not rerun.
On a shared machine use --clock cpu --threads 1 and a --cpu-scale that converts CPU seconds to the
seconds you report (docs/training/own-painting.md says how it was calibrated).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTS = {
    "a": "experiment=new_painting warm_start=rows",
    "b": "experiment=new_painting warm_start=rows_then_all",
    "c": "experiment=new_painting warm_start=convs",
    "d": "experiment=cpu_zoo",
}
NAMES = {"a": "(a) rows only", "b": "(b) rows, then all", "c": "(c) convs + mean row", "d": "(d) from scratch"}


def recipe(start: str, painting: Path, photos: str) -> str:
    paint = f"style.image={painting}" if start != "d" else f"styles=[{painting}]"
    return (f"{STARTS[start]} {paint} name=ttq_{start}_{painting.stem} data=folder data.root={photos} "
            "data.num_workers=0 data.val_size=8 callbacks.model_checkpoint.every_n_train_steps=100000")


def run(a: argparse.Namespace) -> None:
    budgets = dict(kv.split("=") for kv in a.minutes)
    for painting in map(Path, a.paintings):
        for start in a.starts:
            out = Path(a.out) / f"{start}_{painting.stem}"
            if (out / "time_to_quality.json").is_file():
                continue
            cmd = [sys.executable, "-m", "fast_nst", "quality",
                   f"time_to_quality.recipe=\"{recipe(start, painting.resolve(), a.photos)}\"",
                   f"time_to_quality.minutes={budgets.get(start, a.default_minutes)}", f"time_to_quality.every={a.every}",
                   f"time_to_quality.clock={a.clock}", f"time_to_quality.cpu_scale={a.cpu_scale}",
                   *([f"time_to_quality.threads={a.threads}"] if a.threads else []),
                   f"photos={a.heldout}", "num_photos=8", f"size={a.size}", f"iterations={a.iterations}",
                   "report_at=[50]", f"output={out}"]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)


def tabulate(out: Path) -> str:
    rows, minutes = [], set()
    for f in sorted(out.glob("*/time_to_quality.json")):
        start, painting = f.parent.name.split("_", 1)
        table = json.loads(f.read_text())
        points = {round(r["minutes"], 3): r for r in table["checkpoints"]}
        minutes |= set(points)
        rows.append((start, painting, points))
    cols = sorted(minutes)
    lines = ["| start | painting | " + " | ".join(f"{m:g} min" for m in cols) + " |",
             "| --- | --- | " + " | ".join("---" for _ in cols) + " |"]
    for start, painting, points in sorted(rows):
        cells = []
        for m in cols:
            r = points.get(m)
            v = None if r is None else r["median_equivalent_iterations"]
            cells.append("" if r is None else ("–" if v is None else f"{v:g} ({r['global_step']})"))
        lines.append(f"| {NAMES.get(start, start)} | {painting} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n(median equivalent iterations over the photos that reached it; steps in brackets)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/ttq_table")
    ap.add_argument("--tabulate", action="store_true", help="only print the table of the runs in --out")
    ap.add_argument("--paintings", nargs="+", default=[])
    ap.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS))
    ap.add_argument("--minutes", nargs="*", default=["c=30"], help="budget per start, e.g. c=30 a=10 (default c=30)")
    ap.add_argument("--default-minutes", type=float, default=10.0, help="budget of the starts not in --minutes")
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    ap.add_argument("--cpu-scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--photos", help="training photos (a folder)")
    ap.add_argument("--heldout", help="held-out photos for quality (8 are used)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=100)
    a = ap.parse_args()
    if not a.tabulate:
        if not (a.paintings and a.photos and a.heldout):
            ap.error("--paintings, --photos and --heldout are required to run (or give --tabulate)")
        run(a)
    print(tabulate(Path(a.out)))


if __name__ == "__main__":
    main()
