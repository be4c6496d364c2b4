import pytest
import torch

from fast_nst.models.transformer import TransformerNet


@pytest.mark.parametrize("upsample", ["transpose", "nearest"])
@pytest.mark.parametrize("hw", [(64, 64), (33, 47), (17, 5), (1, 1), (129, 250)])
def test_output_has_input_size_for_any_size(upsample, hw):
    net = TransformerNet(width=0.25, upsample=upsample).eval()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1


def test_paper_layout_and_parameter_count():
    net = TransformerNet()
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs[0].kernel_size == (9, 9) and convs[0].out_channels == 32
    assert [c.stride for c in convs[1:3]] == [(2, 2), (2, 2)]
    assert [c.out_channels for c in convs[1:3]] == [64, 128]
    assert sum(isinstance(c, torch.nn.ConvTranspose2d) for c in convs) == 2
    assert convs[-1].kernel_size == (9, 9) and convs[-1].out_channels == 3
    assert len(net.residuals) == 5
    assert isinstance(net.encoder[0][0], torch.nn.ReflectionPad2d)
    # 3 + 5*2 + 2 + 1 convs; the published network has ~1.68M parameters
    assert len(convs) == 16
    assert 1.6e6 < sum(p.numel() for p in net.parameters()) < 1.8e6


def test_half_width_and_batch_norm():
    half = TransformerNet(width=0.5, norm="batch")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in half.modules())
    full = sum(p.numel() for p in TransformerNet().parameters())
    assert sum(p.numel() for p in half.parameters()) < full / 3


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="upsample"):
        TransformerNet(upsample="bicubic")
    with pytest.raises(ValueError, match="norm"):
        TransformerNet(norm="layer")


def test_gradients_reach_first_layer():
    net = TransformerNet(width=0.25)
    net(torch.rand(1, 3, 32, 32)).mean().backward()
    assert net.encoder[0][1].weight.grad.abs().sum() > 0


def test_a_kind_can_bring_its_own_norm_layer_and_it_receives_the_condition():
    from fast_nst.models.norms import InstanceNormBase

    class ShiftedNorm(InstanceNormBase):
        """Scale 1, shift = cond (a float per image): the kind's own scale/shift source."""

        seen = []

        def affine(self, cond, batch):
            ShiftedNorm.seen.append(cond)
            shift = torch.as_tensor(cond, dtype=torch.float32).view(-1, 1).expand(batch, self.num_features)
            return torch.ones(1, self.num_features), shift

    net = TransformerNet(width=0.25, norm=ShiftedNorm, num_res_blocks=1, upsample="nearest").eval()
    norms = [m for m in net.modules() if isinstance(m, ShiftedNorm)]
    assert len(norms) == 3 + 2 + 2 and net.config["norm"] == "custom"
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a, b = net(x, torch.tensor([0.0, 0.0])), net(x, torch.tensor([0.0, 3.0]))
    assert all(c is not None for c in ShiftedNorm.seen)  # every norm got the condition
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])  # it acts per image


def test_prepare_batch_keeps_the_structure_and_finds_the_photos():
    from fast_nst.training.module import prepare_batch

    photos, paintings = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    cl = torch.channels_last
    b, p = prepare_batch(photos, cl)
    assert p is b and b.is_contiguous(memory_format=cl)
    b, p = prepare_batch((photos, paintings, torch.tensor([1, 2])), cl)
    assert isinstance(b, tuple) and torch.equal(p, photos) and b[1].is_contiguous(memory_format=cl)
    assert torch.equal(b[2], torch.tensor([1, 2]))  # non-image tensors pass through
    b, p = prepare_batch({"paintings": paintings, "photos": photos}, cl)
    assert torch.equal(p, photos) and set(b) == {"paintings", "photos"}
    with pytest.raises(TypeError, match="photos"):
        prepare_batch({"images": photos}, cl)
