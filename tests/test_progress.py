"""The training progress bar counts global steps out of max_steps, with steps/s, time left and
the loss terms, in a terminal (live bar) and without one (plain lines in the log)."""

import io
import logging
import re

import pytorch_lightning as pl
import torch
from rich.console import Console

from fast_nst.training.progress import StepProgressBar, format_duration
from tiny_training import TinyModule

STEPS = 7


def _fit(bar, tmp_path, max_steps=STEPS, ckpt_path=None):
    torch.manual_seed(0)
    photos = [torch.rand(3, 16, 16) for _ in range(4)]  # 2 steps an epoch, as on a small folder
    trainer = pl.Trainer(max_steps=max_steps, max_epochs=-1, callbacks=[bar], logger=False,
                         default_root_dir=tmp_path, enable_model_summary=False, accelerator="cpu",
                         enable_checkpointing=False)
    trainer.fit(TinyModule(), train_dataloaders=torch.utils.data.DataLoader(photos, batch_size=2),
                ckpt_path=ckpt_path)
    return trainer


def test_plain_lines_count_global_steps_with_rate_eta_and_losses(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fast_nst"):
        _fit(StepProgressBar(log_every_s=0, console=Console(file=io.StringIO())), tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    steps = [int(re.match(r"step (\d+)/(\d+)", ln).group(1)) for ln in lines]
    assert steps[:STEPS] == list(range(1, STEPS + 1))  # one line a step (log_every_s=0), then the final one
    assert all(f"/{STEPS} " in ln for ln in lines)
    last = lines[-1]
    assert last.startswith(f"step {STEPS}/{STEPS} ") and re.search(r"\d+\.\d\d steps/s", last)
    assert "ETA 0:00" in last
    for term in ("loss", "content", "tv"):
        assert re.search(rf"\b{term} [-\d.e+]+", last), (term, last)
    assert "epoch 3" in last  # 7 steps of 2-step epochs
    assert "Epoch" not in caplog.text and "-2" not in last


def test_a_terminal_gets_a_live_bar(tmp_path):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    _fit(StepProgressBar(log_every_s=30, console=console), tmp_path)
    text = out.getvalue()
    assert f"step {STEPS}/{STEPS}" in text and "steps/s" in text and "content" in text


def test_a_resumed_run_counts_on_from_its_checkpoint(tmp_path, caplog):
    first = _fit(StepProgressBar(log_every_s=0, console=Console(file=io.StringIO())), tmp_path, max_steps=4)
    ckpt = tmp_path / "mid.ckpt"
    first.save_checkpoint(ckpt)
    with caplog.at_level(logging.INFO, logger="fast_nst"):
        _fit(StepProgressBar(log_every_s=0, console=Console(file=io.StringIO())), tmp_path, max_steps=6,
             ckpt_path=str(ckpt))
    steps = [m.group(1) for r in caplog.records if (m := re.match(r"step (\d+)/6", r.getMessage()))]
    assert steps[0] == "5" and steps[-1] == "6"


def test_format_duration():
    assert format_duration(59.4) == "0:59" and format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "?"


def test_lightnings_product_tips_are_dropped_and_its_other_lines_kept(caplog):
    """train's output: Lightning's 'Tip: try installing litlogger/litmodels' lines are filtered out
    (fast_nst.training.run), its run information is not."""
    from fast_nst.training.run import _quiet_known_warnings

    _quiet_known_warnings()
    _quiet_known_warnings()  # idempotent: one filter, not two
    lg = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert len(lg.filters) == len({type(f) for f in lg.filters})
    with caplog.at_level(logging.INFO, logger=lg.name):
        lg.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        lg.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records if r.name == lg.name] == ["GPU available: False, used: False"]
