"""Lightning DDP (`trainer=ddp`): 2 CPU processes over gloo train a few steps from train.py; each
rank reads its own shard, only rank zero logs and exports, and the export is the usual file."""

import csv
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT
from fast_nst.training.data.sampler import EpochSampler, ResumableLoader


def test_sampler_shards_are_disjoint_equal_and_resume_per_rank():
    whole = list(EpochSampler(11, seed=5))  # one process: the order of a plain run
    shards = [list(EpochSampler(11, seed=5, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 6  # padded to equal length: same step count per rank
    assert shards[0] + shards[1] != whole and shards[0] != shards[1]
    assert {i for i, _ in shards[0]} | {i for i, _ in shards[1]} == set(range(11))
    assert sorted(shards[0][:5] + shards[1][:5] + shards[0][5:]) == sorted(whole)  # pad is extra
    s = EpochSampler(11, seed=5, num_replicas=2, rank=1)
    s.start = 2
    assert list(s) == shards[1][2:]

    # loader state saved by a 2-process run resumes the same fraction of the epoch on 1 process
    loader = ResumableLoader(list(range(11)), batch_size=2, sampler=EpochSampler(11, seed=5))
    loader.load_state_dict({"epoch": 3, "batches": 2, "world_size": 2})
    assert loader.sampler.epoch == 3 and loader.sampler.start == 8


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_shard_and_export(tmp_path, photos_dir, vgg16_weights):
    ckpts, run, rec = tmp_path / "ck", tmp_path / "run", tmp_path / "rec"
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="offline", FAST_NST_RECORD_SAMPLES=str(rec))
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.devices=2", "data=folder", f"data.root={photos_dir}", "data.image_size=32",
         "data.batch_size=2", "data.val_size=2", "data.num_workers=0", "model=johnson_half",
         "trainer.max_steps=5", "trainer.val_check_interval=3", "trainer.log_every_n_steps=1",
         "logger=csv", "~callbacks.progress_bar", f"loss_net.weights={vgg16_weights}",
         f"export.dir={ckpts}", f"hydra.run.dir={run}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    print(f"DDP run took {time.time() - t0:.1f} s")
    assert "Starting with 2 processes" in out and "distributed_backend=gloo" in out

    # the export: one file, the single-process format, the steps of the run
    from fast_nst.io.export import read_export
    from fast_nst.kinds import load_network
    from fast_nst.models.transformer import TransformerNet

    export = ckpts / "starry_night.safetensors"
    info = read_export(export)
    assert info.model_card["steps"] == 5 and info.network["width"] == 0.5
    assert info.model_card["machine"]["processes"] == 2
    tensors = load_file(str(export))
    ref = TransformerNet(**info.network).state_dict()
    assert {k: v.shape for k, v in tensors.items()} == {k: v.shape for k, v in ref.items()}
    assert all(v.dtype == torch.float32 for v in tensors.values())
    net, _ = load_network(export)
    assert net(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert out.count("exported ") == 1 and out.count("done: ") == 1  # rank zero only

    # logs from rank zero only: one CSV run with every step, one sample grid per validation
    csvs = list(run.rglob("metrics.csv"))
    assert len(csvs) == 1
    rows = list(csv.DictReader(open(csvs[0])))
    steps = {int(r["step"]) for r in rows}
    assert max(steps) == 4  # steps 0..4 logged (5 optimisation steps)
    assert [float(r["data/skipped_images"]) for r in rows if r.get("data/skipped_images")][-1] == 0
    assert [p.name for p in run.rglob("samples/*.png")] == ["step_0000003.png"]

    # resume state: per-rank batches of the last epoch plus the world size
    ck = torch.load(ckpts / "runs" / "starry_night" / "last.ckpt", weights_only=False)
    assert ck["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 2, "batches": 1, "world_size": 2}]

    # sharding: 8 training photos -> 4 per rank per epoch; epoch 0's shards partition the photos
    lines = {k: (rec / f"rank{k}.txt").read_text().split("\n")[:-1] for k in (0, 1)}
    items = {k: [tuple(map(int, ln.split())) for ln in v] for k, v in lines.items()}
    first = {k: {i for i, _ in v[:4]} for k, v in items.items()}
    assert len(first[0]) == len(first[1]) == 4, items
    assert not first[0] & first[1] and first[0] | first[1] == set(range(8)), items
    assert not set(items[0]) & set(items[1]), "both ranks read the same (photo, crop)"


def test_ddp_config_builds_a_ddp_trainer(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from pytorch_lightning.strategies import DDPStrategy

    from conftest import compose

    cfg = compose("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                            f"run_dir={tmp_path}", "trainer.max_steps=7"])
    HydraConfig.instance().set_config(cfg)
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.world_size == 2
    assert trainer.strategy._ddp_kwargs == {"find_unused_parameters": False, "gradient_as_bucket_view": True}
    assert not trainer._accelerator_connector.use_distributed_sampler
    assert trainer.max_steps == 7  # the rest comes from trainer/default.yaml
