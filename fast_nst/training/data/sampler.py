"""Data order that resumes exactly, and the loader that Lightning checkpoints.

Data order is a pure function of (seed, epoch), and each crop of (seed, epoch, position), so a
resumed run (`ckpt_path=last`) sees exactly the batches the uninterrupted run would have seen.
Under DDP every rank takes its own slice of each epoch's order (`EpochSampler` shards itself, so
Lightning never wraps it). Loader workers ignore SIGINT/SIGTERM so that the main process can save
before it stops (`worker_init`).
"""

from __future__ import annotations

import math
import os
import signal
from typing import Iterator

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

def dist_world() -> tuple[int, int]:
    """(world size, rank) of the initialised torch.distributed group, else (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class EpochSampler(DistributedSampler):
    """Seeded permutation per epoch that can start part-way through (for exact resume), sharded
    over the ranks of a DDP run.

    Every rank draws the same global order for (seed, epoch), pads it to a multiple of the world
    size by repeating its head (like DistributedSampler), and keeps positions rank, rank + world,
    ...: disjoint shards of equal length, so all ranks run the same number of steps. With one
    process the order is exactly that of a non-distributed run. `num_replicas`/`rank` default to
    the initialised torch.distributed group (Lightning creates the train loader after joining it).

    It subclasses DistributedSampler only so that Lightning sees it shards itself and does not
    wrap it (a wrapper would hide `epoch`/`start`, which exact resume needs); it shares no code.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True,
                 num_replicas: int | None = None, rank: int | None = None):
        # no DistributedSampler.__init__: it wants a dataset and an initialised process group
        world, r = dist_world()
        self.num_replicas = world if num_replicas is None else num_replicas
        self.rank = r if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} outside world size {self.num_replicas}")
        self.n, self.seed, self.shuffle, self.drop_last = n, seed, shuffle, False
        self.total_size = math.ceil(n / self.num_replicas) * self.num_replicas
        self.num_samples = self.total_size // self.num_replicas
        self.epoch, self.start = 0, 0  # start: positions of this rank's shard to skip (resume)

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at every epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        crops = torch.randint(0, 2**31 - 1, (self.n,), generator=g)
        pad = self.total_size - self.n
        if pad:  # drawn after the unpadded order, so one process matches a non-distributed run
            order = torch.cat([order, order.repeat(math.ceil(pad / self.n))[:pad]])
            crops = torch.cat([crops, torch.randint(0, 2**31 - 1, (pad,), generator=g)])
        start, self.start = self.start, 0
        for k in range(self.rank + start * self.num_replicas, self.total_size, self.num_replicas):
            yield int(order[k]), int(crops[k])


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning checkpoints (it calls state_dict/load_state_dict on loaders
    that have them) as (epoch, batches handed out per rank, world size). Under DDP all ranks hand
    out the same number of batches, so rank zero's state (the one saved) is everyone's; resuming
    with another world size keeps the epoch and the fraction of it already done (not exact)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._served = 0

    def __iter__(self):
        self._served = self.sampler.start // self.batch_size  # batches skipped on resume count as served
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self._served,
                "world_size": self.sampler.num_replicas}

    def load_state_dict(self, state: dict) -> None:
        epoch = state["epoch"]
        batches = state["batches"] * state.get("world_size", 1) // self.sampler.num_replicas
        if batches >= len(self):
            # A checkpoint of an epoch's last batch: Lightning resumes it at the next epoch, but
            # creates this loader's iterator (and draws its first batch) in FitLoop.setup_data,
            # before on_advance_start calls set_epoch. Left at (epoch, start=all), that iterator
            # is empty: the resumed run spent Lightning's next epoch on zero batches and read the
            # order of the epoch after it (tests/test_killed_runs.py, resumed from step 4)
            epoch, batches = epoch + 1, 0
        self.sampler.epoch = epoch
        self.sampler.start = batches * self.batch_size


def worker_init(worker_id: int) -> None:
    """Every loader worker ignores SIGINT and SIGTERM: Ctrl-C reaches the whole process group and a
    scheduler may signal every process, and a worker killed by either ends the run ("DataLoader
    worker exited unexpectedly") before the main process has saved last.ckpt
    (fast_nst.training.guards.StopOnSignal). Workers still exit with the main process. Lightning's seeding of
    workers (seed_everything(workers=True), which it only adds when a loader has no init function
    of its own) is kept."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


def loader_kwargs(num_workers: int, pin_memory: bool = True, persistent_workers: bool = True,
                  prefetch_factor: int | None = 2) -> dict:
    """DataLoader speed options; those that only mean something with workers or CUDA are dropped
    otherwise (PyTorch rejects prefetch_factor without workers, pinning without CUDA is a no-op).
    Workers start with `worker_init`."""
    kw = dict(num_workers=num_workers, pin_memory=bool(pin_memory) and torch.cuda.is_available())
    if num_workers > 0:
        kw.update(persistent_workers=bool(persistent_workers), prefetch_factor=prefetch_factor,
                  worker_init_fn=worker_init)
    return kw
