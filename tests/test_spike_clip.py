"""The gradient-spike guard (optim.spike_clip): a batch whose gradient norm is far above the
running (geometric) mean of earlier ones is scaled down to spike_clip x that mean, and logged."""

import math

import pytest
import torch

from conftest import compose
from fast_nst.training.module import StyleTransferModule


def _module(vgg16_weights, *overrides):
    cfg = compose("train", ["style=starry_night", "model.width=0.25", "loss.style_size=64",
                            f"loss_net.weights={vgg16_weights}", *overrides])
    m = StyleTransferModule.from_config(cfg)
    logged = []
    m.log_dict = lambda d, **k: logged.append(dict(d))  # Lightning's logger needs a Trainer
    return m, logged


def _step(m, scale: float) -> float:
    """Gradients of norm `scale` (same direction every step), the guard, the norm it leaves."""
    params = list(m.net.parameters())
    n = sum(p.numel() for p in params)
    for p in params:
        p.grad = torch.full_like(p, scale / math.sqrt(n))
    m.on_before_optimizer_step(None)
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))


def test_a_spike_is_scaled_down_and_logged(vgg16_weights):
    m, logged = _module(vgg16_weights)
    factor = m.hparams.optim["spike_clip"]
    assert factor == 5.0  # conf/optim/adam.yaml
    for _ in range(20):
        assert _step(m, 1.0) == pytest.approx(1.0, rel=1e-5)  # ordinary steps pass unchanged
    assert float(m.log_grad_norm_avg) == pytest.approx(0.0, abs=1e-5)  # log(1), float32 sums
    assert logged[-1] == {"train/grad_norm": pytest.approx(1.0, rel=1e-5), "train/grad_clipped": 0.0}
    assert _step(m, 100.0) == pytest.approx(factor, rel=1e-4)  # 100x the mean -> 5x
    assert logged[-1]["train/grad_norm"] == pytest.approx(100.0, rel=1e-5)  # the raw norm is logged
    assert logged[-1]["train/grad_clipped"] == 1.0
    # the running mean moved by the clipped norm, not by the spike
    assert float(m.log_grad_norm_avg) == pytest.approx(0.02 * math.log(factor), abs=1e-5)
    assert _step(m, 1.0) == pytest.approx(1.0, rel=1e-5)
    assert "log_grad_norm_avg" in m.state_dict()  # checkpointed, so a resumed run guards the same


def test_spike_clip_null_turns_the_guard_off(vgg16_weights):
    m, logged = _module(vgg16_weights, "optim.spike_clip=null")
    _step(m, 1.0)
    assert _step(m, 100.0) == pytest.approx(100.0, rel=1e-5) and logged == []
