"""Compact networks and distillation (README "Real time on a CPU"): the shape options of
TransformerNet, a multi-style network's painting as a per-style network, the distill recipe's
config, distillation lowering the student's distance to its teacher, and the shipped compact zoo."""

import pytest
import torch

from conftest import ROOT, compose, run_script
from fast_nst.io.export import export_network, read_export
from fast_nst.kinds import load_network
from fast_nst.kinds import get_kind
from fast_nst.models.transformer import SHAPE_DEFAULTS, TransformerNet
from fast_nst.io.paintings import Painting

STARRY = Painting("starry_night", str(ROOT / "assets" / "styles" / "starry_night.jpg"))
SCREAM = Painting("the_scream", str(ROOT / "assets" / "styles" / "the_scream.jpg"))
COMPACT = dict(width=0.25, upsample="transpose", num_res_blocks=5, tanh_scale=1.0, outer_kernel=3)


def _convs(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]


def test_shape_options_and_their_defaults():
    net = TransformerNet(width=0.25, outer_kernel=3, block="separable")
    convs = _convs(net)
    assert convs[0].kernel_size == (3, 3) and convs[-1].kernel_size == (3, 3)
    assert [c.out_channels for c in convs[:3]] == [8, 16, 32]
    depthwise = [c for c in convs if c.groups > 1]
    assert len(depthwise) == 2 * 5 and all(c.groups == 32 and c.kernel_size == (3, 3) for c in depthwise)
    assert net.config["outer_kernel"] == 3 and net.config["block"] == "separable"
    # the paper's network records none of them, so exports made before the options existed match
    assert not set(SHAPE_DEFAULTS) & set(TransformerNet(width=0.25).config)
    x = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        assert net(x).shape == x.shape
    with pytest.raises(ValueError, match="outer_kernel"):
        TransformerNet(outer_kernel=4)
    with pytest.raises(ValueError, match="block"):
        TransformerNet(block="dense")


def test_zoo_exports_load_unchanged():
    """A shipped full-width export: same config, strict load, and the same output as a network
    built with the defaults (the options did not move a weight or change a layer)."""
    net, info = load_network(ROOT / "checkpoints" / "starry_night.safetensors")
    assert info.network == net.config and not set(SHAPE_DEFAULTS) & set(info.network)
    plain = TransformerNet(**{k: v for k, v in info.network.items()}).eval()
    plain.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(plain(x), net.eval()(x))


def test_a_multi_style_painting_as_a_per_style_network(tmp_path):
    torch.manual_seed(0)
    cin = get_kind("cin")([STARRY, SCREAM], **COMPACT).eval()
    for norm in cin.conditional_norms():  # distinct rows, so choosing the wrong one would show
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    one = cin.single_style("the_scream")
    assert one.kind == "johnson" and one.style_names == ["the_scream"] and one.config["outer_kernel"] == 3
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(one(x), cin(x, cin.condition(style="the_scream")))
        assert not torch.equal(one(x), cin(x, cin.condition(style="starry_night")))
    export_network(one, tmp_path / "one.safetensors", thumbnail_size=0)
    back, info = load_network(tmp_path / "one.safetensors")
    assert info.network["outer_kernel"] == 3
    with torch.no_grad():
        assert torch.equal(back(x), one(x))


def test_distill_recipe_composes():
    cfg = compose("train", ["experiment=distill", "teacher=six_paintings", "data.root=/tmp"])
    assert cfg.name == "six_paintings_compact" and cfg.model.width == 0.25
    assert cfg.teacher == "six_paintings" and cfg.distill.pixel_weight > 0
    assert cfg.trainer.max_steps > 0 and cfg.data.image_size == 128


def test_distill_takes_the_teachers_paintings_objective_and_kind(tmp_path, photos_dir, vgg16_weights):
    """fast_nst.training.run's teacher step: a cin teacher makes a cin student of its paintings, trained
    against the teacher's recorded loss; a teacher of another kind is refused."""
    from fast_nst.training.run import _apply_teacher

    torch.manual_seed(0)
    teacher = get_kind("cin")([STARRY, SCREAM], **COMPACT)
    loss = {"content_layers": {"relu2_2": 1.0}, "style_layers": {"relu1_2": 1.0}, "content_weight": 1.0,
            "style_weight": 3.0, "tv_weight": 0.0, "style_size": 64}
    path = export_network(teacher, tmp_path / "duo.safetensors", loss=loss,
                          loss_net={"arch": "vgg16", "weights": vgg16_weights, "pooling": "max"}, thumbnail_size=0)
    cfg = compose("train", ["experiment=distill", f"teacher={path}", f"data.root={photos_dir}", "name=duo_compact"])
    paintings = _apply_teacher(cfg)
    assert [p.name for p in paintings] == ["starry_night", "the_scream"]
    assert cfg.model.kind == "cin" and "norm" not in cfg.model and cfg.loss.style_weight == 3.0
    cfg = compose("train", ["experiment=distill", "teacher=six_paintings", "init_from=six_paintings",
                            f"data.root={photos_dir}"])
    with pytest.raises(ValueError, match="init_from"):
        _apply_teacher(cfg)


def _distance(student, teacher, x, idx=None):
    with torch.no_grad():
        return float((student(x, idx) - teacher(x, idx)).pow(2).mean())


def test_distillation_lowers_the_students_distance_to_the_teacher(photos_dir, vgg16_weights):
    """The same compact student, seed and 30 Adam steps on 48 px crops, once against the teacher's
    objective alone and once distilled as experiment=distill does (the first 25 steps on the pixel
    target alone, then the objective plus both targets; a multi-style teacher, each image with
    its own painting): distilled, it ends much closer to the teacher on photos neither trained on."""
    from fast_nst.training.data.decode import resize_crop
    from fast_nst.training.distill import Distillation
    from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
    from fast_nst.models.losses import PerceptualLoss

    crops = torch.stack([pil_to_tensor(resize_crop(load_rgb(f), 48, None)) for f in list_images(photos_dir)])
    train, held_out = crops[:6], crops[6:]
    idx_held = torch.arange(len(held_out)) % 2
    torch.manual_seed(0)
    teacher = get_kind("cin")([STARRY, SCREAM], width=0.5, upsample="transpose", num_res_blocks=2, tanh_scale=1.0)
    for norm in teacher.conditional_norms():  # two clearly different "paintings"
        norm.bias.data.normal_(0, 0.5)
    loss = {"content_layers": {"relu2_2": 1.0}, "style_layers": {"relu1_2": 1.0, "relu2_2": 1.0},
            "content_weight": 1.0, "style_weight": 5.0, "tv_weight": 0.0}
    objective = PerceptualLoss.build(loss, {"arch": "vgg16", "weights": vgg16_weights, "pooling": "max"})
    objective.set_styles([torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48)], [1.0, 1.0])

    def trained(distil: bool):
        torch.manual_seed(1)
        student = get_kind("cin")([STARRY, SCREAM], **COMPACT)
        crit = Distillation(objective, teacher, 1e6 if distil else 0.0, 1.0 if distil else 0.0,
                            {"relu1_2": 1.0, "relu2_2": 1.0})
        opt = torch.optim.Adam(student.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        seen = []
        for step in range(30):
            crit.pixel_only = distil and step < 25
            batch, idx = train[torch.randperm(len(train), generator=g)[:4]], torch.tensor([0, 1, 0, 1])
            terms = crit(student(batch, idx), batch, idx)
            seen.append(set(terms))
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
        return student, terms, seen

    torch.manual_seed(1)
    before = _distance(get_kind("cin")([STARRY, SCREAM], **COMPACT), teacher, held_out, idx_held)
    alone, terms, _ = trained(False)
    assert float(terms["pixel"]) == 0 and float(terms["loss"]) == float(terms["objective"])
    distilled, terms, seen = trained(True)
    assert seen[0] == {"pixel", "loss"}  # pixel-only steps: no loss-network pass
    assert {"content", "style", "tv", "objective", "pixel", "feature", "loss"} <= seen[-1]
    assert float(terms["loss"]) == pytest.approx(float(terms["objective"] + terms["pixel"] + terms["feature"]))
    assert not any(p.requires_grad for p in teacher.parameters())
    d_alone, d_distilled = (_distance(s, teacher, held_out, idx_held) for s in (alone, distilled))
    assert d_distilled < 0.6 * d_alone and d_distilled < 0.6 * before, (before, d_alone, d_distilled)


@pytest.mark.slow
def test_train_py_distills_a_shipped_teacher(tmp_path, photos_dir, vgg16_weights):
    """The recipe end to end: train.py experiment=distill teacher=<a per-style export>, 30 steps
    at 64 px; the export is a compact per-style network of the teacher's painting, its card names
    the teacher, and it is closer to the teacher than the same network untrained."""
    from fast_nst.training.data.decode import resize_crop
    from fast_nst.io.images import list_images, load_rgb, pil_to_tensor

    ckpts, run = tmp_path / "checkpoints", tmp_path / "run"
    r = run_script("train.py", "experiment=distill", "teacher=starry_night", f"data.root={photos_dir}",
                   "data.image_size=64", "data.num_workers=0", "data.val_size=2", "trainer.max_steps=30",
                   "trainer.val_check_interval=30", "logger=csv", f"loss_net.weights={vgg16_weights}",
                   f"export.dir={ckpts}", f"hydra.run.dir={run}", "optim.lr=3e-3")
    assert r.returncode == 0, r.stderr[-3000:]
    student, info = load_network(ckpts / "starry_night_compact.safetensors")
    teacher, tinfo = load_network(ROOT / "checkpoints" / "starry_night.safetensors")
    assert info.kind == "johnson" and info.style_names == ["starry_night"] and info.network["width"] == 0.25
    assert info.model_card["teacher"]["export"] == "starry_night" and info.loss == tinfo.loss
    torch.manual_seed(0)
    untrained = get_kind("johnson")(info.styles, **info.network)
    x = torch.stack([pil_to_tensor(resize_crop(load_rgb(f), 64, None)) for f in list_images(photos_dir)[-2:]])
    assert _distance(student.eval(), teacher.eval(), x) < 0.7 * _distance(untrained.eval(), teacher, x)
