"""Network kinds and the export schema: a new kind works end to end without edits elsewhere, v1
exports stylize as before, model cards update atomically, the norm statistics seam."""

import shutil

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from conftest import CONF, ROOT, compose
from fast_nst import Stylizer
from fast_nst.io.export import FORMAT, export_network, read_export, update_model_card
from fast_nst.kinds import StyleNetwork, available_kinds, get_kind, register_kind, split_model_config
from fast_nst.models.norms import (ConditionalInstanceNorm2d, InstanceNorm2d, capture_statistics,
                                   fixed_statistics)
from fast_nst.models.transformer import TransformerNet
from fast_nst.io.paintings import Painting, locate_painting, resolve_painting

# a v1 export (the 200-step demo model shipped before the zoo), kept for the v1 compatibility tests
SHIPPED = ROOT / "tests" / "data" / "starry_night_demo_v1.safetensors"


# ------------------------------------------------------------------ a kind defined only here
@register_kind
class TintNetwork(StyleNetwork):
    """The smallest possible kind: a learned 1x1 colour mix. Defined in this test only, it trains
    through fast_nst.training.run, exports, loads in Stylizer and runs in stylize.py's code path."""

    kind = "tint_test"

    def __init__(self, styles, *, gain: float):
        super().__init__()
        self.styles, self.config = list(styles), {"gain": gain}
        self.mix = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * gain)
            self.mix.bias.zero_()

    def forward(self, x, cond=None):
        return torch.sigmoid(4 * self.mix(x) - 2)


def test_a_new_kind_trains_exports_and_stylizes_without_edits(tmp_path, photos_dir, vgg16_weights):
    from hydra.core.hydra_config import HydraConfig

    from fast_nst.stylize.command import run as stylize_run
    from fast_nst.training.run import train

    assert "tint_test" in available_kinds()
    cfg = compose("train", ["style=the_scream", "data=folder", f"data.root={photos_dir}", "data.image_size=32",
                            "data.num_workers=0", "trainer.max_steps=3", "trainer.val_check_interval=3",
                            "logger=none", "~callbacks.progress_bar", f"loss_net.weights={vgg16_weights}",
                            f"export.dir={tmp_path}", f"run_dir={tmp_path / 'run'}"])
    cfg.model = OmegaConf.create({"kind": "tint_test", "gain": 0.5})
    HydraConfig.instance().set_config(cfg)
    result = train(cfg)
    info = read_export(result["export"])
    assert info.kind == "tint_test" and info.network == {"gain": 0.5} and info.style_names == ["the_scream"]
    tensors = load_file(str(result["export"]))
    assert set(tensors) == {"mix.weight", "mix.bias"}
    assert not torch.equal(tensors["mix.weight"], torch.eye(3).view(3, 3, 1, 1) * 0.5)  # it trained

    st = Stylizer.load(result["export"], device="cpu")
    assert isinstance(st.net, TintNetwork) and st.styles == ["the_scream"]
    assert st(Image.new("RGB", (21, 13), (200, 30, 30))).size == (21, 13)
    out = tmp_path / "out.png"
    scfg = OmegaConf.load(CONF / "stylize" / "stylize.yaml")
    del scfg["defaults"], scfg["hydra"]
    scfg.merge_with({"ckpt": str(result["export"]), "input": str(ROOT / "assets" / "photos" / "coffee.jpg"),
                     "output": str(out), "max_size": 48, "device": "cpu", "strength": 0.5})
    assert stylize_run(scfg) == 0 and Image.open(out).width == 48


def test_registry_explains_unknown_kinds_and_clashes():
    with pytest.raises(ValueError, match="unknown network kind 'nope'.*cin.*johnson"):
        get_kind("nope")
    with pytest.raises(ValueError, match="no `kind` key"):
        split_model_config({"width": 1.0})
    with pytest.raises(ValueError, match="already registered"):
        register_kind(type("OtherTint", (TintNetwork,), {"kind": "tint_test"}))
    with pytest.raises(TypeError, match="subclass StyleNetwork"):
        register_kind(nn.Conv2d)


# ------------------------------------------------------------------ v1 exports
def _reference_johnson(cfg: dict) -> nn.Module:
    """Johnson et al.'s network written with torch.nn layers only (PyTorch's own instance norm),
    laid out so that a v1 export's keys load into it strictly."""
    c1, c2, c3 = (max(1, round(c * cfg["width"])) for c in (32, 64, 128))

    def conv(i, o, k, s=1):
        return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(i, o, k, s))

    def norm(c):
        return nn.InstanceNorm2d(c, affine=True)

    class Res(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(conv(c, c, 3), norm(c), nn.ReLU(), conv(c, c, 3), norm(c))

        def forward(self, x):
            return x + self.body(x)

    class Up(nn.Module):
        def __init__(self, i, o):
            super().__init__()
            self.op = nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=1)

        def forward(self, x):
            return self.op(x)

    net = nn.Module()
    net.encoder = nn.Sequential(conv(3, c1, 9), norm(c1), nn.ReLU(), conv(c1, c2, 3, 2), norm(c2), nn.ReLU(),
                                conv(c2, c3, 3, 2), norm(c3), nn.ReLU())
    net.residuals = nn.Sequential(*(Res(c3) for _ in range(cfg["num_res_blocks"])))
    net.decoder = nn.Sequential(Up(c3, c2), norm(c2), nn.ReLU(), Up(c2, c1), norm(c1), nn.ReLU(), conv(c1, 3, 9))
    net.forward = lambda x: 0.5 * (torch.tanh(net.decoder(net.residuals(net.encoder(x)))) + 1)
    return net.eval()


def test_v1_export_stylizes_like_a_plain_pytorch_johnson_net():
    info = read_export(SHIPPED)
    assert info.format == "fast_nst.transformer.v1" and info.kind == "johnson"
    assert info.style_names == ["starry_night"] and info.styles[0].credit.startswith("Vincent van Gogh")
    assert info.loss_net["arch"] == "vgg16" and info.model_card["steps"] == 200
    ref = _reference_johnson(info.network)
    ref.load_state_dict(load_file(str(SHIPPED)))  # strict: the v1 keys are the network's keys
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        want = ref(x)
    for channels_last in (True, False):
        st = Stylizer.load(SHIPPED, device="cpu", channels_last=channels_last)
        torch.testing.assert_close(st.stylize_tensor(x), want, atol=2e-5, rtol=0)
        torch.testing.assert_close(st.stylize_tensor(x, style="starry_night"), want, atol=2e-5, rtol=0)
    with pytest.raises(ValueError, match="knows starry_night"):
        st.stylize_tensor(x, style="the_scream")
    with pytest.raises(ValueError, match="style_image"):
        st.stylize_tensor(x, style_image=str(ROOT / "assets" / "styles" / "udnie.jpg"))


def test_update_model_card_rewrites_atomically_and_upgrades_v1(tmp_path):
    path = tmp_path / "starry.safetensors"
    shutil.copy(SHIPPED, path)
    before = load_file(str(path))
    x = torch.rand(1, 3, 40, 52)
    out_before = Stylizer.load(path, device="cpu").stylize_tensor(x)

    info = update_model_card(path, {"quality": {"median_equivalent_iterations": 10.5, "photos": 8}})
    assert info.format == FORMAT and info.kind == "johnson"
    assert info.model_card["quality"]["photos"] == 8 and info.model_card["steps"] == 200
    assert info.model_card["upgraded_from"] == "fast_nst.transformer.v1"
    after = load_file(str(path))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(Stylizer.load(path, device="cpu").stylize_tensor(x), out_before)

    update_model_card(path, {"minutes": 40})
    assert set(read_export(path).model_card) >= {"quality", "minutes", "steps"}  # merged, not replaced
    assert update_model_card(path, {"note": "x"}, replace=True).model_card == {"note": "x"}
    data = path.read_bytes()
    with pytest.raises(TypeError):
        update_model_card(path, {"bad": object()})
    assert path.read_bytes() == data  # nothing written
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_v2_roundtrip_keeps_every_painting(tmp_path):
    paintings = [resolve_painting(n).with_hash() for n in ("udnie", "great_wave", "composition_vii")]
    paintings.append(Painting(name="mine", image=str(ROOT / "assets" / "styles" / "the_scream.jpg"), weight=2.5).with_hash())
    torch.manual_seed(0)
    net = get_kind("cin")(paintings, width=0.25, upsample="nearest", num_res_blocks=2, tanh_scale=1.0).eval()
    for m in net.conditional_norms():
        nn.init.normal_(m.weight, 1.0, 0.3), nn.init.normal_(m.bias, 0.0, 0.3)
    path = export_network(net, tmp_path / "four.safetensors", loss={"style_weight": 2.0},
                          loss_net={"arch": "vgg16", "weights": "oxford", "pooling": "max"},
                          vgg_weights="oxford", model_card={"steps": 7}, thumbnail_size=64)
    info = read_export(path)
    assert info.styles == paintings  # names, files, weights, titles, credits, sha256: all kept
    assert info.styles[3].weight == 2.5 and info.styles[0].title.startswith("Udnie")
    assert set(info.thumbnails) == {p.name for p in paintings}
    st = Stylizer.load(path, device="cpu")
    x = torch.rand(1, 3, 36, 44)
    with torch.no_grad():
        for i, name in enumerate(st.styles):
            want = net(x, torch.tensor([i]))
            torch.testing.assert_close(st.stylize_tensor(x, style=name), want, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ paintings
def test_locate_painting_checks_the_file_hash(tmp_path):
    p = resolve_painting("udnie").with_hash()
    moved = Painting(name=p.name, image=str(tmp_path / "gone" / "udnie.jpg"), sha256=p.sha256)
    assert locate_painting(moved) == ROOT / "assets" / "styles" / "udnie.jpg"  # found by file name + hash
    fake = tmp_path / "udnie.jpg"
    Image.new("RGB", (8, 8)).save(fake)
    edited = Painting(name="udnie", image=str(fake), sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="sha256 differs.*style_image="):
        locate_painting(edited)
    assert resolve_painting(str(ROOT / "assets" / "styles" / "great_wave.jpg")).credit.startswith("Katsushika")


# ------------------------------------------------------------------ norms
def test_norm_statistics_can_come_from_elsewhere():
    torch.manual_seed(0)
    norm = InstanceNorm2d(4)
    x = torch.randn(1, 4, 20, 20) * 2 + 1
    with torch.no_grad():
        with capture_statistics(norm) as stats:
            full = norm(x.clone())
        with fixed_statistics(norm, stats):  # a crop normalised with the whole image's statistics
            crop = norm(x[..., 5:15, 3:13].contiguous())
        own = norm(x[..., 5:15, 3:13].contiguous())
    torch.testing.assert_close(crop, full[..., 5:15, 3:13])
    assert (own - full[..., 5:15, 3:13]).abs().max() > 1e-2  # its own statistics differ
    assert norm.statistics_source is None  # restored after the block

    net = TransformerNet(width=0.25).eval()
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        y = net(x)
        with capture_statistics(net) as stats:
            net(x)
        assert len(stats) == 15  # every instance norm of the network
        with fixed_statistics(net, stats):
            torch.testing.assert_close(net(x), y)
    with pytest.raises(ValueError, match="no statistics"):
        with fixed_statistics(net, {}):
            pass


def test_conditional_norm_layouts_agree_and_need_a_style():
    torch.manual_seed(1)
    net = TransformerNet(width=0.25, norm="conditional", upsample="nearest", num_styles=3).eval()
    for m in net.modules():
        if isinstance(m, ConditionalInstanceNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.3), nn.init.normal_(m.bias, 0.0, 0.3)
    x = torch.rand(2, 3, 28, 36)
    idx = torch.tensor([2, 0])
    with torch.no_grad():
        ref = net(x, idx)
        cl = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last), idx)
        torch.testing.assert_close(cl, ref, atol=1e-5, rtol=1e-4)
        # per image: row 2 for the first, row 0 for the second
        torch.testing.assert_close(net(x[:1], torch.tensor([2])), ref[:1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="painting index or mixing weights"):
        net(x)


# ------------------------------------------------------------------ names and vocabulary
def test_the_run_name_names_everything(tmp_path):
    cfg = compose("train", ["style=the_scream", f"hydra.run.dir={tmp_path}"])
    assert cfg.name == "the_scream" and cfg.export.name == "the_scream" and cfg.styles is None
    assert cfg.callbacks.model_checkpoint.dirpath.endswith("runs/the_scream")
    assert cfg.logger.wandb.name == "the_scream"
    multi = compose("train", ["experiment=multi_style", "styles=[udnie,great_wave]", "name=pair",
                              f"hydra.run.dir={tmp_path}"])
    assert multi.model.kind == "cin" and multi.model.upsample == "nearest" and list(multi.styles) == ["udnie", "great_wave"]
    assert multi.export.name == "pair" and multi.callbacks.model_checkpoint.dirpath.endswith("runs/pair")
    assert multi.steps_per_style > 0


def test_help_shows_the_style_vocabulary():
    from conftest import run_script

    r = run_script("train.py", "--help", timeout=120)
    assert r.returncode == 0 and "styles:" in r.stdout and "steps_per_style:" in r.stdout and "init_from:" in r.stdout
    r = run_script("stylize.py", "--help", timeout=120)
    assert r.returncode == 0 and all(k in r.stdout for k in ("style:", "style_weights:", "style_image:", "strength:"))
