"""The optimizer comes from the config (conf/optim/): `_target_` names its class and the other keys,
but the training loop's own, are its arguments, so changing it needs no code."""

import pytest
import torch

from conftest import compose
from fast_nst.io.errors import ConfigError
from fast_nst.training.module import LOOP_KEYS, build_optimizer


def _groups():
    """Two parameter groups with their own learning rates, as a warm start hands them over."""
    net = torch.nn.Linear(3, 2)
    return [{"params": [net.weight], "lr": 1e-3}, {"params": [net.bias], "lr": 1e-2}]


def test_the_default_builds_adam_with_the_configs_arguments():
    cfg = compose("train", [])
    opt = build_optimizer(cfg.optim, _groups())
    assert type(opt) is torch.optim.Adam
    assert tuple(opt.defaults["betas"]) == tuple(cfg.optim.betas) and opt.defaults["weight_decay"] == cfg.optim.weight_decay
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2]  # each group keeps its own rate
    assert set(LOOP_KEYS) <= set(cfg.optim)  # in the config, but not passed to the optimizer


def test_optim_adamw_and_a_target_override_swap_the_optimizer():
    cfg = compose("train", ["optim=adamw"])
    opt = build_optimizer(cfg.optim, _groups())
    assert type(opt) is torch.optim.AdamW and opt.defaults["weight_decay"] == 0.01
    assert cfg.optim.lr == compose("train", []).optim.lr and cfg.optim.spike_clip is not None  # adam's, inherited
    cfg = compose("train", ["optim._target_=torch.optim.SGD", "~optim.betas", "+optim.momentum=0.9"])
    opt = build_optimizer(cfg.optim, _groups())
    assert type(opt) is torch.optim.SGD and opt.defaults["momentum"] == 0.9


def test_arguments_the_optimizer_does_not_take_are_a_one_line_error():
    cfg = compose("train", ["optim._target_=torch.optim.SGD"])  # SGD takes no betas
    with pytest.raises(ConfigError, match=r"optim: torch.optim.SGD cannot be built from .*betas.*~optim.betas") as e:
        build_optimizer(cfg.optim, _groups())
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="optim has no _target_"):
        build_optimizer({"lr": 1e-3}, _groups())
