"""Every speed option of the training step and of inference gives the plain result (fp32, to
float rounding): speed must never change what is learned."""

import pytest
import torch

from omegaconf import OmegaConf

from conftest import CONF
from fast_nst.training.module import PerfOptions, StyleTransferModule
from fast_nst.models.losses import PerceptualLoss
from fast_nst.models.norms import InstanceNorm2d
from fast_nst.models.transformer import TransformerNet
from fast_nst.models.vgg import VGGEncoder

FAST = OmegaConf.to_container(OmegaConf.load(CONF / "perf" / "fast.yaml"))

CONTENT = {"relu2_2": 1.0}
STYLE = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


@pytest.fixture(scope="module")
def encoder(vgg16_weights):
    return VGGEncoder(set(CONTENT) | set(STYLE), weights=vgg16_weights)


def _loss_and_grad(encoder, vgg_pass, out, content, channels_last=False):
    crit = PerceptualLoss(encoder, CONTENT, STYLE, 1.0, 0.25, 10.0, vgg_pass=vgg_pass)
    torch.manual_seed(0)
    crit.set_style([torch.rand(1, 3, 48, 48)])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = out.detach().contiguous(memory_format=fmt).requires_grad_()
    terms = crit(out, content.contiguous(memory_format=fmt))
    terms["loss"].backward()
    return {k: v.detach() for k, v in terms.items()}, out.grad


@pytest.mark.parametrize("vgg_pass,channels_last", [("separate", False), ("concat", False),
                                                    ("separate", True), ("concat", True),
                                                    ("full", True)])
def test_vgg_pass_and_layout_give_the_plain_loss(encoder, vgg_pass, channels_last):
    torch.manual_seed(1)
    out, content = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40)
    ref, ref_grad = _loss_and_grad(encoder, "full", out, content)
    terms, grad = _loss_and_grad(encoder, vgg_pass, out, content, channels_last)
    for k in ("content", "style", "tv", "loss"):
        torch.testing.assert_close(terms[k], ref[k], rtol=1e-4, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-4 * ref_grad.abs().max().item())


def test_concat_features_equal_separate_passes(encoder):
    torch.manual_seed(2)
    out, content = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    f_out, f_tgt = encoder.forward_concat(out, content, CONTENT)
    assert set(f_out) == set(encoder.layers) and set(f_tgt) == set(CONTENT)
    ref_out, ref_tgt = encoder(out), encoder(content)
    for l in f_out:
        torch.testing.assert_close(f_out[l], ref_out[l], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(f_tgt["relu2_2"], ref_tgt["relu2_2"], rtol=1e-4, atol=1e-3)


def test_channels_last_instance_norm_matches_pytorch():
    torch.manual_seed(3)
    ours, ref = InstanceNorm2d(8), torch.nn.InstanceNorm2d(8, affine=True)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
    ref.load_state_dict(ours.state_dict())
    x = (torch.randn(2, 8, 9, 7) * 3 + 2)
    xr = x.clone().requires_grad_()
    xc = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    y_ref, y = ref(xr), ours(xc)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    (y_ref * y_ref.detach()).sum().backward()
    (y * y.detach()).sum().backward()
    torch.testing.assert_close(xc.grad, xr.grad, rtol=1e-3, atol=1e-4)
    with torch.inference_mode():  # in-place path, both layouts
        torch.testing.assert_close(ours(x.contiguous(memory_format=torch.channels_last)), ref(x),
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours(x.clone()), ref(x), rtol=1e-4, atol=1e-5)
    xn = x.clone().requires_grad_()  # contiguous (NCHW) gradient path
    ours(xn).square().sum().backward()
    xr.grad = None
    ref(xr).square().sum().backward()
    torch.testing.assert_close(xn.grad, xr.grad, rtol=1e-3, atol=1e-4)


def test_channels_last_network_equals_contiguous_network():
    torch.manual_seed(4)
    net = TransformerNet(width=0.25).eval()
    cl = TransformerNet(width=0.25).eval().to(memory_format=torch.channels_last)
    cl.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 36, 44)
    with torch.inference_mode():
        torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), net(x),
                                   rtol=1e-4, atol=1e-5)


def test_perf_options_validate():
    assert PerfOptions.from_config(FAST).channels_last is True  # the defaults live in conf/perf/fast.yaml
    assert PerfOptions.from_config({**FAST, "vgg_pass": "concat"}).vgg_pass == "concat"
    with pytest.raises(ValueError, match="unknown \\['chanels_last'\\]"):
        PerfOptions.from_config({**FAST, "chanels_last": True})
    with pytest.raises(ValueError, match="missing \\['compile'\\]"):
        PerfOptions.from_config({k: v for k, v in FAST.items() if k != "compile"})
    with pytest.raises(ValueError, match="vgg_pass"):
        PerceptualLoss(torch.nn.Identity(), CONTENT, STYLE, vgg_pass="fused")


def test_fast_and_plain_training_steps_agree(vgg16_weights, style_image):
    """The real module: 3 Adam steps with perf=plain and perf=fast end at the same loss."""
    kw = dict(model={"kind": "johnson", "width": 0.25, "norm": "instance", "upsample": "transpose",
                     "num_res_blocks": 5, "tanh_scale": 1.0},
              loss={"content_layers": CONTENT, "style_layers": STYLE, "content_weight": 1.0,
                    "style_weight": 0.25, "tv_weight": 10.0, "style_size": 64},
              loss_net={"arch": "vgg16", "weights": vgg16_weights, "pooling": "max"},
              paintings=[{"name": "starry_night", "image": str(style_image)}],
              optim={"_target_": "torch.optim.Adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0, "scheduler": None}, seed=0)
    torch.manual_seed(5)
    batches = [torch.rand(2, 3, 48, 48) for _ in range(3)]
    losses = {}
    for name, perf in {"plain": {**FAST, "vgg_pass": "full", "channels_last": False}, "fast": FAST}.items():
        torch.manual_seed(0)
        m = StyleTransferModule(**kw, perf=perf)
        m.log_dict = lambda *a, **k: None
        opt = torch.optim.Adam(m.net.parameters(), 1e-3)
        for b in batches:
            opt.zero_grad()
            loss = m.training_step(b, 0)
            loss.backward()
            opt.step()
        losses[name] = loss.item()
        assert not any(k.startswith("_net_fn") for k in m.state_dict())
    assert losses["fast"] == pytest.approx(losses["plain"], rel=1e-4)


def test_gram_of_channels_last_features_equals_contiguous():
    from fast_nst.models.stats import gram_matrix

    f = torch.randn(2, 16, 9, 11)
    torch.testing.assert_close(gram_matrix(f.contiguous(memory_format=torch.channels_last)), gram_matrix(f),
                               rtol=1e-5, atol=1e-6)
