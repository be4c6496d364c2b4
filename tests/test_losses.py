import pytest
import torch

from fast_nst.models.losses import ContentLoss, PerceptualLoss, StyleLoss, total_variation
from fast_nst.models.stats import gram_matrix
from fast_nst.models.vgg import VGGEncoder, layer_names


def test_gram_matches_direct_computation():
    f = torch.randn(2, 5, 4, 3)
    g = gram_matrix(f)
    b, c, h, w = f.shape
    direct = torch.zeros(b, c, c)
    for n in range(b):
        for i in range(c):
            for j in range(c):
                direct[n, i, j] = (f[n, i] * f[n, j]).sum() / (c * h * w)
    torch.testing.assert_close(g, direct)


def test_total_variation():
    assert total_variation(torch.ones(1, 3, 8, 8)) == 0
    x = torch.zeros(1, 1, 2, 2)
    x[..., 0, 0] = 1.0  # two neighbours differ by 1 out of 2 pairs per direction
    assert total_variation(x).item() == pytest.approx(0.5 + 0.5)


def test_layer_names_vgg16_vgg19():
    n16, n19 = layer_names("vgg16"), layer_names("vgg19")
    assert len(n16) == 31 and len(n19) == 37  # torchvision's features lengths
    assert n16.index("relu2_2") == 8 and n16.index("relu4_3") == 22
    assert n19.index("relu4_2") == 22 and n19.index("relu5_1") == 29


def test_encoder_is_cut_frozen_and_stays_eval(vgg16_weights):
    enc = VGGEncoder(["relu2_2", "relu1_2"], weights=vgg16_weights)
    assert len(enc.features) == 9  # up to relu2_2 only
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training
    out = enc(torch.rand(2, 3, 32, 32))
    assert set(out) == {"relu1_2", "relu2_2"}
    assert out["relu2_2"].shape == (2, 128, 16, 16)
    assert (out["relu2_2"] >= 0).all() and out["relu2_2"].abs().sum() > 0


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="relu9_9"):
        VGGEncoder(["relu9_9"], weights=None)


def test_style_loss_zero_on_own_targets_and_blend(vgg16_weights):
    enc = VGGEncoder(["relu1_2", "relu2_2"], weights=vgg16_weights)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    sl = StyleLoss(["relu1_2", "relu2_2"])
    sl.set_targets([enc(a)])
    assert sl(enc(a)).item() == pytest.approx(0.0, abs=1e-6)
    assert sl(enc(b)).item() > 0
    blended = StyleLoss(["relu1_2"])
    blended.set_targets([enc(a), enc(b)], [1.0, 0.0])
    torch.testing.assert_close(blended.target("relu1_2"), sl.target("relu1_2"))


def test_perceptual_loss_one_pass_matches_separate_terms(vgg16_weights):
    enc = VGGEncoder(["relu1_2", "relu2_2", "relu3_3"], weights=vgg16_weights)
    crit = PerceptualLoss(enc, {"relu2_2": 1.0}, ["relu1_2", "relu3_3"], 2.0, 3.0, 4.0)
    crit.set_style([torch.rand(1, 3, 40, 40)])
    out, content = torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32)
    terms = crit(out, content)
    f_out, f_c = enc(out), enc(content)
    torch.testing.assert_close(terms["content"], 2.0 * ContentLoss(["relu2_2"])(f_out, f_c))
    torch.testing.assert_close(terms["style"], 3.0 * crit.style(f_out))
    torch.testing.assert_close(terms["tv"], 4.0 * total_variation(out))
    terms["loss"].backward()
    assert out.grad.abs().sum() > 0
