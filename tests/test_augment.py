"""StyleAugment (fast_nst.dataset.augment): shapes, dtypes, tv_tensors and labels kept, seeded draws, p.
The fast tests use Magenta's network with random weights (no download); the slow one the real
weights."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from conftest import ROOT
from fast_nst.dataset.augment import StyleAugment


@pytest.fixture(scope="module")
def net():
    from fast_nst.kinds.magenta import MagentaNetwork

    torch.manual_seed(0)
    return MagentaNetwork([], pretrained=False, train_predictor=False, style_size=64)


def batch(dtype=torch.uint8, n=6, h=40, w=52) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, h, w, generator=g)
    return (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_shapes_dtypes_and_range_are_kept(net, dtype):
    aug = StyleAugment(p=1.0, seed=0, network=net)
    x = batch(dtype)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert float(y.min()) >= 0 and float(y.max()) <= (255 if dtype == torch.uint8 else 1)
    assert all(not torch.equal(y[i], x[i]) for i in range(len(x)))  # p=1: every image restyled
    one = aug(x[0])  # a single (3, H, W) image
    assert one.shape == x[0].shape and one.dtype == dtype


def test_the_same_seed_gives_the_same_batch_and_another_seed_another(net):
    x = batch()
    a, b, c = (StyleAugment(p=0.5, seed=s, network=net) for s in (3, 3, 4))
    first = a(x)
    assert torch.equal(first, b(x))
    assert not torch.equal(first, c(x))
    assert not torch.equal(first, a(x))  # the generator moves on: the next batch draws anew


def test_p_decides_which_images_change_and_the_rest_pass_through_exactly(net):
    x = batch(n=32, h=16, w=16)
    assert torch.equal(StyleAugment(p=0.0, seed=0, network=net)(x), x)
    y = StyleAugment(p=0.5, seed=0, network=net)(x)
    changed = [not torch.equal(y[i], x[i]) for i in range(len(x))]
    assert 6 <= sum(changed) <= 26  # about half, from the seeded draw (binomial(32, 0.5))


def test_a_torchvision_v2_pipeline_with_labels(net):
    """As in the module docstring: after the loader, with a label beside the images."""
    pipeline = v2.Compose([StyleAugment(p=1.0, seed=0, network=net, mode="interpolate"),
                           v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    images, labels = tv_tensors.Image(batch()), torch.tensor([0, 1, 2, 3, 4, 5])
    out, out_labels = pipeline(images, labels)
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.float32 and out.shape == images.shape
    assert torch.equal(out_labels, labels)


def test_style_embeddings_follow_the_paintings(net):
    gauss = StyleAugment(p=1.0, seed=0, network=net)
    assert gauss.embeddings.shape == (6, 100)  # the bundled paintings by default
    z = gauss.sample_embeddings(4000)
    assert torch.allclose(z.mean(0), gauss.embeddings.mean(0), atol=0.15 * float(gauss.embeddings.std()) + 1e-3)
    interp = StyleAugment(paintings=[ROOT / "assets/styles/udnie.jpg", ROOT / "assets/styles/the_scream.jpg"],
                          p=1.0, seed=0, network=net, mode="interpolate")
    e = interp.embeddings
    t = interp.sample_embeddings(100)
    # each draw lies on the segment between the two paintings' embeddings
    s = ((t - e[0]) @ (e[1] - e[0])) / (e[1] - e[0]).square().sum()
    assert torch.allclose(t, e[0] + s[:, None] * (e[1] - e[0]), atol=1e-4) and 0 <= s.min() and s.max() <= 1


@pytest.mark.parametrize("kwargs,match", [
    ({"p": 1.5}, "a probability"),
    ({"strength_range": (0.8, 0.2)}, "0 <= low <= high <= 1"),
    ({"mode": "uniform"}, "one of gaussian, interpolate"),
    ({"paintings": "/no/such/folder"}, "no such folder"),
])
def test_bad_arguments_say_what_is_wrong(net, kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        StyleAugment(network=net, **kwargs)


def test_with_magentas_weights(magenta_weights_cache, monkeypatch):
    from fast_nst.io.images import load_rgb, pil_to_tensor

    monkeypatch.setenv("FAST_NST_CACHE", str(magenta_weights_cache))
    aug = StyleAugment(p=1.0, strength_range=(1.0, 1.0), seed=0)
    photo = pil_to_tensor(load_rgb(ROOT / "assets/photos/chelsea_cat.jpg", max_size=96)).unsqueeze(0)
    y = aug(photo)
    assert y.shape == photo.shape and torch.isfinite(y).all()
    assert float((y - photo).abs().mean()) > 0.05  # restyled, not a copy
    weak = StyleAugment(p=1.0, strength_range=(0.0, 0.0), seed=0)(photo)
    # strength 0 is the network's rendering of the photo's own style: closer to the photo
    assert float((weak - photo).abs().mean()) < float((y - photo).abs().mean())
