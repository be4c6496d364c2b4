"""The real path: train.py -> export -> stylize.py, with real VGG weights and real photos."""

import csv

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import ROOT, compose, run_script


def _metrics(run_dir):
    rows = list(csv.DictReader(open(next(run_dir.rglob("metrics.csv")))))
    return [(int(r["step"]), float(r["train/style"])) for r in rows if r.get("train/style")]


@pytest.mark.slow
def test_train_export_stylize_end_to_end(tmp_path, photos_dir, vgg16_weights):
    ckpts, run = tmp_path / "checkpoints", tmp_path / "run"
    r = run_script(
        "train.py", "style=starry_night", "data=folder", f"data.root={photos_dir}",
        "data.image_size=64", "data.num_workers=0", "model=johnson_half", "trainer.max_steps=30",
        "trainer.val_check_interval=15", "trainer.log_every_n_steps=1", "logger=csv",
        f"loss_net.weights={vgg16_weights}", f"export.dir={ckpts}", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "step 30/30 " in r.stdout + r.stderr  # the progress bar counts steps, not batches of an epoch
    export = ckpts / "starry_night.safetensors"
    assert export.is_file()
    style = _metrics(run)
    first, last = sum(s for _, s in style[:3]) / 3, sum(s for _, s in style[-3:]) / 3
    assert last < 0.8 * first, f"style loss did not fall: {style}"
    assert list(run.rglob("samples/step_*.png")), "validation grid not written"
    assert (ckpts / "runs" / "starry_night" / "last.ckpt").is_file()

    photo = ROOT / "assets" / "photos" / "chelsea_cat.jpg"
    out = tmp_path / "cat_starry.jpg"
    r = run_script("stylize.py", f"ckpt={export}", f"input={photo}", f"output={out}", "device=cpu")
    assert r.returncode == 0, r.stderr
    src, res = Image.open(photo), Image.open(out)
    assert res.size == src.size
    diff = torch.tensor(list(res.convert("L").getdata()), dtype=torch.float) - \
        torch.tensor(list(src.convert("L").getdata()), dtype=torch.float)
    assert diff.abs().mean() > 5  # it changed the picture


def test_resume_continues_exactly(tmp_path, photos_dir, vgg16_weights):
    """2+2 steps with a kill in between == 4 steps straight: optimizer, step and data order."""
    from hydra.core.hydra_config import HydraConfig

    from fast_nst.training.run import train

    def run(name, steps, resume=None):
        cfg = compose("train", [
            "data=folder", f"data.root={photos_dir}", "data.image_size=32", "data.batch_size=2",
            "data.num_workers=0", "data.val_size=2", "model=johnson_half", f"trainer.max_steps={steps}",
            "trainer.val_check_interval=100", "logger=none", "~callbacks.progress_bar",
            "callbacks.model_checkpoint.every_n_train_steps=1", f"loss_net.weights={vgg16_weights}",
            f"export.dir={tmp_path / name}", f"run_dir={tmp_path / name / 'run'}",
            f"ckpt_path={resume}" if resume else "ckpt_path=null"])
        HydraConfig.instance().set_config(cfg)
        return train(cfg)

    straight = run("a", 5)
    run("b", 3)
    resumed = run("b", 5, resume="last")
    assert straight["global_step"] == resumed["global_step"] == 5
    wa, wb = load_file(str(straight["export"])), load_file(str(resumed["export"]))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


def test_resume_without_checkpoint_is_explained(tmp_path):
    from fast_nst.training.run import resolve_resume
    from pytorch_lightning.callbacks import ModelCheckpoint

    with pytest.raises(FileNotFoundError, match="ckpt_path=last"):
        resolve_resume("last", [ModelCheckpoint(dirpath=tmp_path)])


@pytest.mark.slow
def test_default_wandb_logger_works_offline_without_account(tmp_path, photos_dir, vgg16_weights):
    """The default logger must never need an account: offline run with config, losses, samples and
    the exported model as an artifact."""
    run = tmp_path / "run"
    env_home = tmp_path / "home"  # no ~/.netrc, no API key
    env_home.mkdir()
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(env_home), PYTHONUNBUFFERED="1")
    r = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "data=folder", f"data.root={photos_dir}",
         "data.image_size=32", "data.num_workers=0", "model=johnson_half", "trainer.max_steps=4",
         "trainer.val_check_interval=2", f"loss_net.weights={vgg16_weights}",
         f"export.dir={tmp_path / 'ck'}", f"hydra.run.dir={run}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wandb sync" in r.stdout + r.stderr  # told once how to upload
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = {p.name for p in runs[0].rglob("*")}
    # the run file (config, metrics, artifact records) and the logged validation grids
    assert any(f.endswith(".wandb") for f in files) and any(f.endswith(".png") for f in files)
    assert (tmp_path / "ck" / "starry_night.safetensors").is_file()
