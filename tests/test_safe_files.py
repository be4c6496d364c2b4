"""No file the project loads can run code: a crafted pickle given as ckpt= (stylize) or as
ckpt_path= (resume) is refused with a clear error and never executes; the checkpoints training
writes load with weights_only=True and resume."""

import pickle

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from conftest import compose
from fast_nst.training.checkpoint_io import AtomicCheckpointIO
from fast_nst.io.errors import ConfigError
from fast_nst.stylize.stylizer import Stylizer
from tiny_training import TinyModule


class Payload:
    """Unpickling this creates `marker`: proof that the file's code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(params=["zip", "legacy"])
def crafted(request, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.ckpt"
    if request.param == "zip":  # what torch.save writes
        torch.save({"state_dict": {}, "x": Payload(marker)}, path)
    else:  # a bare pickle, as torch's legacy format
        path.write_bytes(pickle.dumps({"x": Payload(marker)}, protocol=2))
    assert not marker.exists()
    return path, marker


def test_the_payload_does_run_when_unpickled(crafted):  # so the tests below can fail
    path, marker = crafted
    try:
        torch.load(path, weights_only=False)
    except RuntimeError:  # the legacy form: torch read our dict as its magic number, after running it
        pass
    assert marker.exists()


def test_stylize_refuses_a_pickle_as_ckpt_without_running_it(crafted):
    path, marker = crafted
    with pytest.raises(ConfigError, match="PyTorch pickle.*arbitrary code") as err:
        Stylizer.load(path, device="cpu")
    assert str(path) in str(err.value) and "safetensors" in str(err.value)
    assert not marker.exists()


def test_resume_refuses_a_pickle_with_code_without_running_it(crafted):
    path, marker = crafted
    with pytest.raises(ConfigError, match="refused to load.*arbitrary code") as err:
        AtomicCheckpointIO().load_checkpoint(path)
    assert f"ckpt_path={path}" in str(err.value)
    assert not marker.exists()


def test_checkpoints_of_the_real_training_config_load_weights_only_and_resume(tmp_path):
    """The callbacks, data module (resumable sampler) and loops of conf/train.yaml put only
    tensors and plain containers in a checkpoint, so weights_only=True loses nothing."""
    from hydra.core.hydra_config import HydraConfig

    cfg = compose("train", ["logger=none", f"run_dir={tmp_path}", f"export.dir={tmp_path}",
                            "data.image_size=32", "data.batch_size=2", "data.num_workers=0",
                            "trainer.max_steps=3", "trainer.accelerator=cpu", "trainer.val_check_interval=2",
                            "callbacks.model_checkpoint.every_n_train_steps=1"])
    HydraConfig.instance().set_config(cfg)

    def fit(ckpt_path=None):
        callbacks = [instantiate(c) for k, c in cfg.callbacks.items() if k != "export"]  # export needs .net
        trainer = instantiate(cfg.trainer, logger=False, callbacks=callbacks, enable_model_summary=False)
        trainer.fit(TinyModule(), datamodule=instantiate(cfg.data, seed=0), ckpt_path=ckpt_path)
        return trainer

    fit()
    last = tmp_path / "runs" / cfg.style.name / "last.ckpt"
    state = AtomicCheckpointIO().load_checkpoint(last)  # weights_only=True inside
    assert state["global_step"] == 3 and state["loops"] and state["optimizer_states"]
    cfg.trainer.max_steps = 5
    assert fit(str(last)).global_step == 5
