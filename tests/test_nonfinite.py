"""A NaN/inf loss term or gradient stops training at once with a message naming the term, the
step and what to try; the last good weights are checkpointed and exported, never the bad ones."""

import pytorch_lightning as pl
import pytest
import torch

from fast_nst.training.callbacks import ExportCallback
from fast_nst.training.checkpoint_io import AtomicCheckpointIO
from fast_nst.io.errors import NonFiniteLossError
from fast_nst.kinds import load_network
from fast_nst.training.guards import NonFiniteLossGuard
from fast_nst.kinds import get_kind
from fast_nst.io.paintings import Painting

BAD_STEP = 4  # the 4th optimisation step goes wrong; 3 good ones before it


class Exploding(pl.LightningModule):
    """A real (tiny) transformer whose style term turns NaN/inf, or whose gradient does, at BAD_STEP."""

    def __init__(self, fault: str):
        super().__init__()
        self.fault = fault
        self.save_hyperparameters({"style": {"name": "t"}, "loss": {"style_weight": 0.25},
                                   "loss_net": {}, "optim": {"lr": 1e-3}})
        self.net = get_kind("johnson")([Painting(name="t", image="x.jpg")], width=0.125, norm="instance",
                                       upsample="transpose", num_res_blocks=5, tanh_scale=1.0)
        self.vgg_source = "none"
        self.snapshots: dict[int, dict] = {}

    def training_step(self, batch, batch_idx):
        self.snapshots[self.global_step] = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        out = self.net(batch)
        content = (out - batch).pow(2).mean()
        style = out.mean() ** 2
        bad = self.global_step + 1 == BAD_STEP
        if bad and self.fault == "nan":
            style = style * float("nan")
        if bad and self.fault == "inf":
            style = style + float("inf")
        loss = content + 0.25 * style
        if bad and self.fault == "grad":  # finite loss, infinite gradient: d sqrt(x)/dx at 0
            loss = loss + 0 * torch.sqrt(torch.zeros(()) * out.sum())
        self.last_terms = {"content": content.detach(), "style": style.detach(), "loss": loss.detach()}
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def _fit(tmp_path, fault):
    torch.manual_seed(0)
    photos = [torch.rand(3, 32, 32) for _ in range(4)]
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "runs", every_n_train_steps=100, save_last=True)
    export = ExportCallback(dir=str(tmp_path), name="t", log_artifact=False, thumbnail_size=0)
    module = Exploding(fault)
    trainer = pl.Trainer(max_steps=10, max_epochs=-1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", plugins=[AtomicCheckpointIO()],
                         callbacks=[ckpt, export, NonFiniteLossGuard(check_gradients=True)],
                         default_root_dir=tmp_path)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(photos, batch_size=2))
    return trainer, module, str(err.value)


@pytest.mark.parametrize("fault,shown", [("nan", "style = nan"), ("inf", "style = inf"),
                                         ("grad", "gradient is not finite")])
def test_training_stops_at_the_first_non_finite_step_and_keeps_the_last_good_one(tmp_path, fault, shown):
    trainer, module, msg = _fit(tmp_path, fault)
    assert trainer.global_step == BAD_STEP - 1  # the bad step never reached the optimizer
    assert f"step {BAD_STEP}" in msg and shown in msg, msg
    assert "optim.lr" in msg and "loss.style_weight" in msg and "0.25" in msg, msg
    good = module.snapshots[BAD_STEP - 1]  # the weights the bad step started from
    for k, v in module.net.state_dict().items():
        assert torch.isfinite(v).all() and torch.equal(v, good[k]), k
    last = tmp_path / "runs" / "last.ckpt"
    assert str(last) in msg
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == BAD_STEP - 1
    for k, v in good.items():
        assert torch.equal(state["state_dict"][f"net.{k}"], v), k
    net, meta = load_network(tmp_path / "t.safetensors")
    assert meta.model_card["steps"] == BAD_STEP - 1
    for k, v in net.state_dict().items():
        assert torch.equal(v, good[k]), k
    assert not list(tmp_path.rglob("*.tmp"))


def test_already_broken_weights_are_not_saved_over_the_last_good_ones(tmp_path):
    torch.manual_seed(0)
    module = Exploding("none")
    with torch.no_grad():
        next(module.net.parameters()).fill_(float("nan"))
    trainer = pl.Trainer(max_steps=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", callbacks=[
                             pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "runs", save_last=True),
                             ExportCallback(dir=str(tmp_path), name="t", log_artifact=False, thumbnail_size=0),
                             NonFiniteLossGuard(check_gradients=True)], default_root_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match="already non-finite") as err:
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([torch.rand(3, 32, 32)] * 2))
    assert not err.value.weights_finite
    assert not (tmp_path / "t.safetensors").exists() and not (tmp_path / "runs" / "last.ckpt").exists()
