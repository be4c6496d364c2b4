#!/usr/bin/env python
"""Put a finished training run's export into checkpoints/ with its model card filled from the run's
own files, so a zoo model says how it was made: recipe (the Hydra overrides), steps, training
photos, wall time, machine and quality figures (a fast-nst quality JSON).

    python tools/record_zoo_model.py --export runs/udnie/export/udnie.safetensors \\
        --run-dir runs/udnie/run --quality outputs/quality/udnie/quality.json \\
        --photos "BSDS500 train+val (300) and an ImageNet sample (420): 720 photos" \\
        --wall-minutes 51 --machine "2-core AMD EPYC VM, 3 runs sharing it" --name udnie

A distilled network (experiment=distill) records its distance to its teacher on the teacher's own
objective instead of the L-BFGS protocol: `--painting-losses` takes a tools/painting_losses.py
JSON that scored both, and the card keeps, per painting, every network's terms and the ratio of
the student's total to the teacher's (`--teacher` names the teacher's row):

    python tools/record_zoo_model.py --export checkpoints/starry_night_compact.safetensors --name starry_night_compact \
        --run-dir outputs/starry_night_compact/RUN --painting-losses outputs/painting_losses.json --teacher starry_night ...

The file is copied first (atomically) and the card merged into the copy; the tensors are unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path



def quality_summary(path: Path) -> dict:
    """The numbers of a quality.json worth carrying in a card (per init: median/mean iterations,
    photos reached, and the network's terms next to L-BFGS's at the reported iterations)."""
    q = json.loads(path.read_text())
    s = q["summary"]
    out = {"protocol": "Johnson et al. 2016 Fig. 5: L-BFGS on the training objective until it matches one forward pass",
           "photos": s["photos"], "size": q["size"], "network_terms": s["feedforward_terms"]}
    for init, r in s["init"].items():
        out[init] = {"max_iterations": q["max_iterations"]} | {k: r[k] for k in ("median_equivalent_iterations", "mean_equivalent_iterations",
                                       "per_photo_equivalent_iterations", "reached", "lbfgs_terms_at") if k in r}
    return out


def painting_losses_summary(path: Path, student: str, teacher: str | None) -> dict:
    """Per painting: each network's terms from a painting_losses.py JSON, and the student's total
    loss over the teacher's (`vs_teacher`)."""
    q = json.loads(path.read_text())
    out: dict = {"protocol": "tools/painting_losses.py: the teacher's training objective (content, style, TV) "
                             "on held-out photos, mean over photos",
                 "photos": f"{q['num_photos']} photos of {q['photos']}", "size": q["size"]}
    for r in q["rows"]:
        entry = out.setdefault(r["painting"], {})
        entry[r["network"]] = {k: r[k] for k in ("content", "style", "tv", "loss")}
    for painting, entry in list(out.items()):
        if isinstance(entry, dict) and student in entry and teacher in entry:
            entry["vs_teacher"] = entry[student]["loss"] / entry[teacher]["loss"]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, help="the run's exported .safetensors")
    ap.add_argument("--name", required=True, help="written as checkpoints/<name>.safetensors")
    ap.add_argument("--run-dir", required=True, help="the run's Hydra output folder (holds .hydra/overrides.yaml)")
    ap.add_argument("--quality", nargs="*", default=[],
                    help="fast-nst quality quality.json file(s) for this export (e.g. a noise run and a content run)")
    ap.add_argument("--painting-losses", default=None,
                    help="a tools/painting_losses.py JSON scoring this export (and its teacher): the card's quality")
    ap.add_argument("--student", default=None, help="this export's network label in --painting-losses (default: --name)")
    ap.add_argument("--teacher", default=None, help="the teacher's network label in --painting-losses")
    ap.add_argument("--photos", required=True, help="the training photos, in words (sets and counts)")
    ap.add_argument("--wall-minutes", type=float, required=True, help="training wall time")
    ap.add_argument("--machine", required=True, help="where it trained, in words")
    ap.add_argument("--out-dir", default="checkpoints")
    a = ap.parse_args(argv)

    from omegaconf import OmegaConf

    from fast_nst.io.export import read_export, update_model_card

    overrides = list(OmegaConf.load(Path(a.run_dir) / ".hydra" / "overrides.yaml"))
    # machine-local paths say nothing to a reader of the card
    recipe = [o for o in overrides if not any(k in o for k in ("dirpath", "export.", "loss_net.weights", "data.root"))]
    info = read_export(a.export)
    card = {"recipe": recipe, "command": "python train.py " + " ".join(recipe),
            "steps": info.model_card.get("steps"), "training_photos": a.photos,
            "wall_time_minutes": a.wall_minutes, "machine": a.machine}
    for q in a.quality:  # several runs (inits) of one protocol: their per-init entries side by side
        summary = quality_summary(Path(q))
        card["quality"] = {**summary, **{k: v for k, v in card.get("quality", {}).items()
                                         if k in ("noise", "content")}} if "quality" in card else summary
    if a.painting_losses:
        card["quality"] = painting_losses_summary(Path(a.painting_losses), a.student or a.name, a.teacher)
    dest = Path(a.out_dir) / f"{a.name}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{a.name}.", suffix=".tmp", delete=False) as tmp:
        pass
    shutil.copyfile(a.export, tmp.name)
    update_model_card(tmp.name, card)
    Path(tmp.name).replace(dest)
    print(f"wrote {dest}: {json.dumps(read_export(dest).model_card)[:300]}...")


if __name__ == "__main__":
    main()
