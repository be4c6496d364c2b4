"""Killed runs: `python train.py` is killed with SIGKILL at random moments (inside a step, or
while a checkpoint is being written) and resumed with ckpt_path=last; it must end where an
uninterrupted run ends: same weights, optimizer state, step, data order, and a complete export.

The kill points are random; the seed is printed and FAST_NST_KILL_SEED=N replays a run."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from fast_nst.training.checkpoint_io import AtomicCheckpointIO

STEPS = 12   # optimisation steps of every run; 8 training photos / batch 2 = 4 steps an epoch
BATCH = 2


def _command(photos: Path, vgg: str, out: Path, resume: bool) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "data=folder", f"data.root={photos}",
            "data.image_size=32", f"data.batch_size={BATCH}", "data.num_workers=0", "data.val_size=2",
            "model=johnson_half", f"trainer.max_steps={STEPS}", "trainer.val_check_interval=100",
            "logger=none", "callbacks.model_checkpoint.every_n_train_steps=1",
            f"loss_net.weights={vgg}", f"export.dir={out}", f"hydra.run.dir={out / 'run'}",
            "ckpt_path=last" if resume else "ckpt_path=null"]


def _start(photos, vgg, out: Path, part: int, resume: bool) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="offline",
               FAST_NST_RECORD_SAMPLES=str(out / f"samples{part}"))
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / f"train{part}.log", "w")
    return subprocess.Popen(_command(photos, vgg, out, resume), cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, out: Path, part: int) -> None:
    assert proc.wait(timeout=600) == 0, (out / f"train{part}.log").read_text()[-4000:]


def _step_of(p: Path) -> int:
    """step0000002.ckpt, or step0000002-v1.ckpt: a resumed run redoing a step whose checkpoint the
    killed run had written (killed between that and last.ckpt) gets Lightning's version suffix."""
    m = re.fullmatch(r"step(\d+)(?:-v\d+)?", p.stem)
    assert m, p
    return int(m.group(1))


def _newest_step(runs: Path, since: float) -> int:
    """The newest periodic checkpoint written after `since` (earlier parts left their own)."""
    steps = []
    for p in runs.glob("step*.ckpt"):
        try:
            if p.stat().st_mtime >= since:
                steps.append(_step_of(p))
        except FileNotFoundError:  # top-k rotation removed it meanwhile
            pass
    return max(steps, default=-1)


def _step_seconds(runs: Path, since: float = 0.0) -> float | None:
    """The shortest time between two consecutive steps' checkpoints written after `since`."""
    times = {}
    for p in runs.glob("step*.ckpt"):
        try:
            if (t := p.stat().st_mtime) >= since:
                times[_step_of(p)] = t
        except FileNotFoundError:  # top-k rotation removed it meanwhile
            pass
    gaps = [times[s] - times[s - 1] for s in times if s - 1 in times and times[s] > times[s - 1]]
    return min(gaps, default=None)


def _kill_after(proc: subprocess.Popen, runs: Path, step: int, rng: random.Random, step_s: float) -> None:
    """SIGKILL once this process has written the checkpoint of `step` or a later one, plus a
    random part of a step, so the kill falls anywhere: in the forward pass, the optimizer step,
    or the middle of a checkpoint write.

    `step_s`: the shortest step the uninterrupted run took; the delay is at most that (or this
    run's own shortest step, if shorter), and every kill step leaves at least two steps to run,
    so the kill always lands before the run ends (a fixed 0.4 s could outlast the last two steps
    on a fast machine, and the run then finished and exported before its kill)."""
    started, deadline = time.time(), time.time() + 600
    # last.ckpt too: it is written after the step's own checkpoint, and a kill before the run's
    # first last.ckpt leaves nothing for ckpt_path=last to resume (seen with a first kill at step 1)
    while _newest_step(runs, started) < step or not (runs / "last.ckpt").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    own = _step_seconds(runs, started)
    time.sleep(rng.uniform(0, min(step_s, own) if own else step_s))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, (
        f"the run ended (exit {proc.returncode}) before its kill after step {step}: "
        f"steps took {step_s:.3f} s or less")


def _items(folder: Path) -> list[tuple[int, int]]:
    """(photo index, crop seed) of every training item read, in order."""
    f = folder / "rank0.txt"
    return [tuple(map(int, line.split())) for line in f.read_text().splitlines()] if f.exists() else []


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_killed_twice_then_resumed_equals_an_uninterrupted_run(tmp_path, photos_dir, vgg16_weights):
    seed = int(os.environ.get("FAST_NST_KILL_SEED", random.randrange(10**6)))
    print(f"FAST_NST_KILL_SEED={seed}")
    rng = random.Random(seed)

    straight = tmp_path / "straight"
    _finish(_start(photos_dir, vgg16_weights, straight, 0, resume=False), straight, 0)
    reference = _items(straight / "samples0")
    assert len(reference) >= STEPS * BATCH
    step_s = _step_seconds(straight / "runs" / "starry_night")  # top-k keeps the last 3 steps' files
    assert step_s is not None

    killed = tmp_path / "killed"
    runs = killed / "runs" / "starry_night"
    first = rng.randrange(1, STEPS - 4)
    kill_at = [first, rng.randrange(first + 2, STEPS - 1)]  # the second after the first's resume
    resumed_from = []
    for part, step in enumerate(kill_at):
        proc = _start(photos_dir, vgg16_weights, killed, part, resume=part > 0)
        _kill_after(proc, runs, step, rng, step_s)
        last = _checkpoint(runs / "last.ckpt")  # whole, whatever the kill interrupted
        resumed_from.append(last["global_step"])
        # step N's checkpoint is written, then last.ckpt: the kill may fall between the two
        assert last["global_step"] >= step - 1, (seed, step, last["global_step"])
        assert not (killed / "starry_night.safetensors").exists()  # no export from a killed run
    final = len(kill_at)
    _finish(_start(photos_dir, vgg16_weights, killed, final, resume=True), killed, final)

    # every resumed part read exactly the items the uninterrupted run read from its step on
    for part, step in enumerate(resumed_from, start=1):
        items = _items(killed / f"samples{part}")
        assert items, f"part {part} read nothing (seed {seed})"
        if part < final:
            items = items[: (resumed_from[part] - step) * BATCH]  # what it did before its kill
        assert items == reference[step * BATCH: step * BATCH + len(items)], (seed, part, step)
    assert len(_items(killed / f"samples{final}")) >= (STEPS - resumed_from[-1]) * BATCH

    # same step, weights and optimizer state as the uninterrupted run; the export is whole
    a, b = _checkpoint(straight / "runs" / "starry_night" / "last.ckpt"), _checkpoint(runs / "last.ckpt")
    assert a["global_step"] == b["global_step"] == STEPS
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-4, atol=1e-5, msg=f"{k} (seed {seed})")
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sb[i][k], sa[i][k], rtol=1e-4, atol=1e-6, msg=f"param {i} {k} (seed {seed})")
    assert a["loops"]["fit_loop"]["state_dict"]["combined_loader"] == \
        b["loops"]["fit_loop"]["state_dict"]["combined_loader"]

    from fast_nst.io.export import read_export

    ea, eb = load_file(str(straight / "starry_night.safetensors")), load_file(str(killed / "starry_night.safetensors"))
    assert ea.keys() == eb.keys()
    for k in ea:
        torch.testing.assert_close(eb[k], ea[k], rtol=1e-4, atol=1e-5, msg=k)
    assert read_export(killed / "starry_night.safetensors").model_card["steps"] == STEPS
    assert not list(killed.rglob("*.tmp")), "a temporary file was left behind"


# -------------------------------------------------------------- resume points, fast (no VGG)


def _fit_recording(tmp_path, name: str, photos: Path, monkeypatch, ckpt_path=None, steps: int = 10):
    """TinyModule on the real data module and loader, a checkpoint every step (all kept), every
    training item read recorded; returns the items."""
    from pytorch_lightning import Trainer
    from pytorch_lightning.callbacks import ModelCheckpoint

    from conftest import data_module
    from tiny_training import TinyModule

    record = tmp_path / f"samples_{name}"
    monkeypatch.setenv("FAST_NST_RECORD_SAMPLES", str(record))
    torch.manual_seed(0)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / name, filename="step{step:07d}", auto_insert_metric_name=False,
                                  every_n_train_steps=1, save_top_k=-1, monitor="step", mode="max",
                                  save_on_train_epoch_end=True)
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, callbacks=[checkpoints],
                      enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=None,
                      val_check_interval=1000, plugins=[AtomicCheckpointIO()])
    trainer.fit(TinyModule(), datamodule=data_module(root=str(photos), image_size=16, batch_size=BATCH,
                                                     num_workers=0, min_image_size=16),
                ckpt_path=ckpt_path)
    assert trainer.global_step == steps
    return _items(record)


def test_resuming_at_an_epochs_end_or_inside_one_reads_what_the_straight_run_read(tmp_path, monkeypatch):
    """The step-4 checkpoint closes epoch 0 (8 training photos, batch 2). Resumed from it, the
    run read epoch 2's order instead of epoch 1's: Lightning creates the loader's iterator before
    it sets the sampler's epoch, and the loader restored (epoch 0, every batch served), an empty
    iterator, so Lightning's epoch 1 ran no batch."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):  # 10 photos, 2 held out for validation: 4 steps an epoch
        Image.new("RGB", (24 + i, 20), (25 * i, 100, 200 - 10 * i)).save(photos / f"p{i}.png")
    straight = _fit_recording(tmp_path, "straight", photos, monkeypatch)
    assert len(straight) == 10 * BATCH and len(set(straight)) == len(straight)
    for step in (4, 3, 8):  # an epoch's end, inside an epoch, the end of the next one
        resumed = _fit_recording(tmp_path, f"from{step}", photos, monkeypatch,
                                 ckpt_path=tmp_path / "straight" / f"step{step:07d}.ckpt")
        assert resumed == straight[step * BATCH:], step


# -------------------------------------------------------------- the writer itself, fast


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full, say")


def test_a_failed_checkpoint_save_leaves_the_previous_one_whole(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "runs" / "last.ckpt"
    io.save_checkpoint({"global_step": 3, "w": torch.ones(4)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"global_step": 4, "w": _Unpicklable()}, path)
    assert io.load_checkpoint(path)["global_step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_temp_files_of_a_killed_earlier_process_are_removed(tmp_path):
    path = tmp_path / "last.ckpt"
    stale = tmp_path / ".last.ckpt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    other = tmp_path / ".step0000004.ckpt.def456.tmp"  # another file's temp: not ours to judge
    other.write_bytes(b"x")
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    AtomicCheckpointIO().save_checkpoint({"global_step": 5}, path)
    assert not stale.exists() and other.exists()
    assert torch.load(path, weights_only=True)["global_step"] == 5


def test_the_trainer_config_writes_checkpoints_atomically(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from conftest import compose

    for trainer in ("default", "ddp"):
        cfg = compose("train", [f"trainer={trainer}", "trainer.accelerator=cpu", "trainer.devices=1",
                                f"run_dir={tmp_path}"])
        HydraConfig.instance().set_config(cfg)
        t = instantiate(cfg.trainer, logger=False)
        assert isinstance(t.strategy.checkpoint_io, AtomicCheckpointIO), trainer
