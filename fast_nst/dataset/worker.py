"""`StylizeWorker`: the actor of a dataset job. Ray Data builds one per actor of the pool, so the
network loads once per actor; each call stylizes one batch of rows (`fast_nst.dataset.plan.Item`
columns) and returns one manifest row per image.

Per image: an output that is already done (`plan.is_done`) is skipped, so a retried batch or a
rerun does not write it again; an unreadable input is reported, not raised; everything is written
through `save_image_atomic`, so a killed worker leaves no half image behind.
"""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


class StylizeWorker:
    def __init__(self, ckpt: str, arbitrary: bool, *, device: str = "cpu", threads: int = 1,
                 strength: float = 1.0, max_size: int | None = None, max_pixels: int | None = None,
                 style_size: int | None = None, quality: int = 95, cached_paintings: int = 256):
        import torch

        from fast_nst.io.images import PixelLimit
        from fast_nst.stylize.stylizer import Stylizer

        if threads:
            torch.set_num_threads(int(threads))
        self.stylizer = Stylizer.load(ckpt, device=device, style_size=style_size)
        self.model = self.stylizer.name
        self.arbitrary = arbitrary
        self.strength, self.max_size, self.quality = float(strength), max_size, int(quality)
        self.limit = PixelLimit(max_pixels, "max_pixels", "or remove the file from the input folder")
        self.cached_paintings = int(cached_paintings)
        self.paintings_seen: set[str] = set()  # conditionings the Stylizer holds (one per painting)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        try:  # on a cluster of one machine's nodes (or in the manifest), say which Ray node too
            import ray

            self.worker += f"@{ray.get_runtime_context().get_node_id()[:8]}"
        except Exception:  # not under Ray (a direct call)
            pass

    def style(self, painting: str) -> dict[str, Any]:
        return {"style_image": painting} if self.arbitrary else {"style": painting}

    def write(self, image, path: str) -> None:
        from fast_nst.io.images import save_image_atomic

        ext = Path(path).suffix.lower()
        save_image_atomic(image, path, **({"quality": self.quality} if ext in (".jpg", ".jpeg", ".webp") else {}))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from fast_nst.dataset.plan import is_done
        from fast_nst.io.errors import one_line
        from fast_nst.io.images import ImageError, limit_size, open_image

        n = len(batch["image"])
        rows: list[dict[str, Any]] = []
        todo: dict[tuple, list] = defaultdict(list)  # (size, painting) -> [(row, image, decode seconds)]
        for i in range(n):
            start = time.perf_counter()
            row = {"image": str(batch["image"][i]), "output": str(batch["output"][i]),
                   "painting": str(batch["painting"][i]), "model": self.model, "seconds": "",
                   "status": "", "worker": self.worker, "error": "", "source": str(batch["source"][i])}
            rows.append(row)
            if is_done(row["output"]):
                row["status"] = "skipped"
                continue
            try:
                im = limit_size(open_image(row["source"], self.limit), self.max_size)
            except ImageError as e:
                row.update(status="unreadable", error=str(e))
                continue
            todo[(im.size, row["painting"])].append((row, im, time.perf_counter() - start))
        for (_, painting), group in todo.items():
            start = time.perf_counter()
            try:
                results = self.stylizer.stylize_batch([im for _, im, _ in group], strength=self.strength,
                                                      **self.style(painting))
            except (RuntimeError, ValueError, OSError) as e:  # a bad painting, out of memory: these fail, others go on
                results = [e] * len(group)
            share = (time.perf_counter() - start) / len(group)
            for (row, _, decoded), res in zip(group, results):
                t = time.perf_counter()
                try:
                    if isinstance(res, Exception):
                        raise res
                    self.write(res, row["output"])
                    row["status"] = "ok"
                except (RuntimeError, ValueError, OSError) as e:
                    row.update(status="failed", error=f"{row['source']}: {one_line(e)}")
                row["seconds"] = f"{decoded + share + time.perf_counter() - t:.4f}"
        self.paintings_seen.update(painting for _, painting in todo)
        if len(self.paintings_seen) > self.cached_paintings:  # bounded memory over many paintings
            self.stylizer.clear_conditions()
            self.paintings_seen.clear()
        for row in rows:
            row.pop("source")
        return {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
