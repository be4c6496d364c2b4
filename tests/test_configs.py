"""Every config file composes, and the objects it names build (on CPU, no training)."""

import pytest
from hydra.utils import instantiate

from conftest import CONF, OWN_ROOTS, compose

# conf/optimize/, conf/stylize/, conf/export/ and conf/app/ are the separate config roots of the other
# commands (fast-nst optimize and quality: tests/test_gatys.py; stylize; export; app, below): not
# train groups
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in OWN_ROOTS)


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(group, option, tmp_path):
    over = [f"{group}={option}", f"hydra.run.dir={tmp_path}"]
    if group == "data" and option == "folder":
        over.append(f"data.root={tmp_path}")
    cfg = compose("train", over)
    assert cfg.style.name and cfg.model.kind  # adain has no width: only its decoder learns
    assert cfg.loss.content_layers and cfg.loss.style_layers
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_groups_are_as_documented():
    assert {"style", "data", "model", "loss", "loss_net", "optim", "trainer", "logger", "callbacks",
            "experiment"} <= set(GROUPS)
    assert {"starry_night", "the_scream", "great_wave", "composition_vii", "udnie",
            "shipwreck_of_the_minotaur"} <= set(_options("style"))


def test_style_images_exist():
    from fast_nst.io.images import resolve_path

    for name in _options("style"):
        cfg = compose("train", [f"style={name}"])
        assert resolve_path(cfg.style.image).is_file(), cfg.style.image


def test_experiments_override_the_defaults():
    demo = compose("train", ["experiment=cpu_demo"])
    assert demo.warm_start.source == "six_paintings" and demo.data.image_size == 128
    paper = compose("train", ["experiment=johnson2016"])
    assert paper.trainer.max_steps == 40000 and paper.data.batch_size == 4
    assert paper.data.image_size == 256 and paper.optim.lr == 1e-3
    assert "train2014" in paper.data.root
    assert list(paper.loss.content_layers) == ["relu2_2"]
    assert list(paper.loss.style_layers) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


def test_trainer_loggers_callbacks_and_data_instantiate(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose("train", ["logger=csv", f"run_dir={tmp_path}"])
    HydraConfig.instance().set_config(cfg)
    dm = instantiate(cfg.data, seed=0)
    dm.setup("fit")
    assert len(dm.train_set) >= 8 and len(dm.val_set) == cfg.data.val_size
    callbacks = [instantiate(c) for c in cfg.callbacks.values()]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, logger=loggers, callbacks=callbacks)
    assert trainer.max_steps == cfg.trainer.max_steps
    from fast_nst.training.guards import NonFiniteLossGuard

    assert any(isinstance(c, NonFiniteLossGuard) for c in trainer.callbacks)  # on by default


def _compose_stylize(overrides):
    return compose("stylize", overrides)


def test_stylize_config_requires_ckpt_and_input():
    from omegaconf.errors import MissingMandatoryValue

    cfg = _compose_stylize([])
    with pytest.raises(MissingMandatoryValue):
        _ = cfg.ckpt
    cfg = _compose_stylize(["ckpt=x", "input=y"])
    assert cfg.device == "auto" and cfg.batch_size >= 1 and cfg.strength == 1.0 and cfg.style is None
    # the inference vocabulary: style picks a painting, style_weights mixes, style_image is a file
    cfg = _compose_stylize(["ckpt=x", "input=y", "style=the_scream",
                            "style_weights={starry_night: 0.7, the_scream: 0.3}"])
    assert cfg.style == "the_scream" and dict(cfg.style_weights) == {"starry_night": 0.7, "the_scream": 0.3}


def test_app_config_composes_with_positive_limits():
    cfg = compose("app", ["port=8080"])
    assert cfg.port == 8080 and cfg.host == "127.0.0.1" and cfg.models_dir == "checkpoints"
    assert cfg.max_size > 0 and cfg.video_max_seconds > 0 and cfg.video_max_size > 0 and cfg.max_upload_mb > 0
