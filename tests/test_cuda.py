"""The CUDA tests: run where a GPU is present (benchmarks/gpu_check.sh runs them), skipped elsewhere.
A shipped network stylizes on CUDA as on the CPU (fp32, and half precision within a tolerance),
and a warm-started training step in bf16 lowers the loss on the GPU."""

from __future__ import annotations

import pytest
import torch

from conftest import ROOT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here (benchmarks/gpu_check.sh on a GPU machine)")


def test_shipped_networks_stylize_on_cuda_as_on_the_cpu():
    from fast_nst import Stylizer

    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    for ckpt, style in (("starry_night", None), ("six_paintings", "the_scream")):
        cpu = Stylizer.load(ckpt, device="cpu").stylize_tensor(x, style=style)
        gpu = Stylizer.load(ckpt, device="cuda").stylize_tensor(x.cuda(), style=style)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=2e-3)
        half = Stylizer.load(ckpt, device="cuda", half=True).stylize_tensor(x.cuda(), style=style)
        assert (half.cpu() - cpu).abs().mean() < 1e-2


def test_a_warm_started_bf16_step_on_cuda_lowers_the_loss(vgg16_weights):
    from fast_nst.kinds import get_kind
    from fast_nst.io.paintings import Painting
    from fast_nst.training.warm_start import FromMultiStyle

    painting = Painting(name="udnie", image=str(ROOT / "assets" / "styles" / "udnie.jpg")).with_hash()
    shape = dict(width=1.0, norm="instance", upsample="transpose", num_res_blocks=5, tanh_scale=1.0)
    warm = FromMultiStyle("six_paintings")
    net = warm.build(get_kind("johnson"), shape, [painting]).cuda()
    loss = {"content_layers": {"relu2_2": 1.0}, "style_layers": {l: 1.0 for l in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")},
            "content_weight": 1.0, "style_weight": 5.0, "tv_weight": 6400.0, "style_size": 256}
    objective = net.build_objective(loss, {"arch": "vgg16", "weights": vgg16_weights, "pooling": "max"}, "separate").cuda()
    opt = torch.optim.Adam(warm.parameter_groups(net, 1e-3))
    x = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(0)).cuda()
    losses = []
    for _ in range(10):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            terms = net.training_step(objective, x, None)[1]
        opt.zero_grad()
        terms["loss"].float().backward()
        opt.step()
        losses.append(float(terms["loss"]))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.9 * losses[0], losses
