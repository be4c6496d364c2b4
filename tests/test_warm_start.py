"""Warm starts (conf/warm_start/, fast_nst/training/warm_start.py), the time budget (fast_nst/training/time_budget.py)
and experiment=new_painting: what each start builds from the shipped six_paintings network, that
each one trains through train.py and lowers its loss, that adding rows leaves the other paintings
bit-identical, and that `fast-nst quality`'s time-to-quality mode runs on a tiny budget."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict

from conftest import ROOT, compose, run_script
from fast_nst.kinds import load_network
from fast_nst.kinds import get_kind
from fast_nst.io.paintings import Painting
from fast_nst.training.warm_start import AddRows, FromMultiStyle, build_warm_start

SIX = ROOT / "checkpoints" / "six_paintings.safetensors"
OPTIONS = ["rows", "rows_then_all", "convs"]
SHAPE = dict(width=1.0, norm="instance", upsample="transpose", num_res_blocks=5, tanh_scale=1.0)


def _painting(name: str = "the_scream") -> Painting:
    return Painting(name="mine", image=str(ROOT / "assets" / "styles" / f"{name}.jpg")).with_hash()


def _per_style(**options):
    return FromMultiStyle("six_paintings", **options).build(get_kind("johnson"), SHAPE, [_painting()])


@pytest.mark.parametrize("option", OPTIONS)
def test_each_warm_start_composes_and_builds_its_object(option):
    cfg = compose("train", [f"warm_start={option}"])
    warm = build_warm_start(cfg.warm_start)
    assert isinstance(warm, AddRows if option == "rows" else FromMultiStyle)
    assert warm.source == "six_paintings"
    assert build_warm_start(compose("train", []).get("warm_start")) is None   # default: random weights
    prepared = compose("train", [f"warm_start={option}"])
    warm.prepare(prepared)
    assert prepared.model.kind == ("cin" if option == "rows" else "johnson")
    assert prepared.model.upsample == "transpose"                   # six_paintings' shape
    assert prepared.loss.style_size == 256 and prepared.loss.style_weight == 5.0   # and its objective
    assert (prepared.init_from is not None) == (option == "rows")


def test_a_row_of_the_source_reproduces_its_painting_exactly():
    """A per-style network is one row of the multi-style network: started from starry_night's row
    it stylizes as six_paintings does with style=starry_night."""
    six, _ = load_network(SIX)
    net = _per_style(rows="starry_night").eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), six.stylize(x, six.condition(style="starry_night")), rtol=0, atol=1e-6)


def test_mean_row_start_copies_the_convolutions():
    six, _ = load_network(SIX)
    net = _per_style()
    theirs = six.state_dict()
    for key, value in net.state_dict().items():
        if theirs[key].shape == value.shape:
            assert torch.equal(value, theirs[key]), key
        else:  # a norm: the mean of the six rows
            torch.testing.assert_close(value, theirs[key].mean(0))
    with pytest.raises(Exception, match="not `mean`"):
        _per_style(rows="no_such_painting")


def test_rows_then_all_trains_only_the_norms_first():
    warm = FromMultiStyle("six_paintings", norms_only_steps=3, norm_lr_scale=10.0)
    net = warm.build(get_kind("johnson"), SHAPE, [_painting()])
    groups = warm.parameter_groups(net, lr=1e-3)
    assert [g["lr"] for g in groups] == [1e-2, 1e-3]   # norm_lr_scale 10 given here
    norms, convs = groups[0]["params"], groups[1]["params"]
    assert len(norms) == 2 * 15 and sum(p.numel() for p in norms) < 0.01 * sum(p.numel() for p in convs)
    assert all(p.requires_grad for p in norms) and not any(p.requires_grad for p in convs)
    warm.on_train_step(net, 2)
    assert not any(p.requires_grad for p in convs)
    warm.on_train_step(net, 3)
    assert all(p.requires_grad for p in convs) and all(p.requires_grad for p in norms)


def test_predicted_rows_plug_in(tmp_path, magenta_weights_cache, monkeypatch):
    """warm_start.rows=<any-painting export>: the norms start at the rows a style_prediction network
    (Magenta's embedding -> six_paintings' norms, fitted from six_paintings) predicts for the run's
    painting, so the per-style network starts as that network stylizes the painting."""
    from fast_nst.io.export import export_network, load_export

    monkeypatch.setenv("FAST_NST_CACHE", str(magenta_weights_cache))
    sp = get_kind("style_prediction").for_training(
        dict(width=1.0, upsample="transpose", num_res_blocks=5, tanh_scale=1.0, style_size=256), [], load_export(SIX))
    export = export_network(sp.eval(), tmp_path / "predictor.safetensors", thumbnail_size=0)
    painting = _painting()   # the_scream's file under another name: any painting file works
    net = FromMultiStyle("six_paintings", rows=str(export)).build(get_kind("johnson"), SHAPE, [painting]).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), sp.stylize(x, sp.condition(style_image=painting.image)), rtol=0, atol=1e-5)
        assert not torch.allclose(net(x), _per_style().eval()(x), atol=1e-3)   # not the mean row


def test_time_budget_checkpoints_every_interval_and_stops(tmp_path):
    """A tiny module under a 0.6 s budget with a checkpoint every 0.2 s: the marks in order, each
    with its step, seconds and load, and training stops at the budget."""
    from tiny_training import TinyModule

    from fast_nst.training.time_budget import TimeBudget

    budget = TimeBudget(minutes=0.01, every=0.01 / 3, clock="wall", dirpath=str(tmp_path / "minutes"))
    data = torch.utils.data.DataLoader(torch.rand(64, 3, 16, 16), batch_size=2)

    class Slow(TinyModule):
        def training_step(self, batch, batch_idx):
            import time

            time.sleep(0.02)
            return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(max_steps=10_000, callbacks=[budget], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Slow(), data)
    timeline = json.loads((tmp_path / "minutes" / "timeline.json").read_text())
    marks = [r["minutes"] for r in timeline]
    # every mark passed gets a checkpoint (a step longer than the interval, on a loaded machine,
    # would skip the marks inside it) and the budget's end gets the last one
    assert len(marks) >= 2 and marks == sorted(set(marks)) and marks[-1] == 0.01
    assert all(abs(m / (0.01 / 3) - round(m / (0.01 / 3))) < 1e-3 for m in marks)   # multiples of `every`
    assert [r["ckpt"] for r in timeline] == [f"min{m:08.3f}.ckpt" for m in marks]   # min0000.003.ckpt ...
    steps = [r["step"] for r in timeline]
    assert steps == sorted(steps) and steps[0] > 0 and trainer.global_step == steps[-1] < 10_000
    # wall_seconds is rounded to 2 decimals and minutes to 6 (0.006667 min = 0.40002 s)
    assert all(r["wall_seconds"] >= r["minutes"] * 60 - 0.01 for r in timeline)
    for r in timeline:
        assert (tmp_path / "minutes" / r["ckpt"]).is_file() and r["load_average"]


def test_new_painting_names_the_run_after_the_file_and_requires_it(tmp_path):
    from fast_nst.io.errors import ConfigError
    from fast_nst.io.validate import validate_train

    cfg = compose("train", ["experiment=new_painting", f"style.image={ROOT / 'assets/styles/udnie.jpg'}"])
    assert cfg.name == "udnie" and cfg.style.title is None and cfg.warm_start is not None
    assert cfg.callbacks.time_budget.minutes > 0 and cfg.logger.csv
    assert compose("train", ["experiment=new_painting", "style.image=x/My Painting.png"]).name == "My Painting"
    with pytest.raises(ConfigError, match="style.image is required"):
        validate_train(compose("train", ["experiment=new_painting", f"export.dir={tmp_path}"]))


# -------------------------------------------------------------------------------- training (slow)
def _tiny(option: str | None, tmp_path, photos_dir, vgg16_weights, steps: int = 10):
    over = [f"data.root={photos_dir}", "data=folder", "data.image_size=64", "data.batch_size=2",
            "data.num_workers=0", "data.val_size=2", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
            "trainer.log_every_n_steps=1", "logger=csv", "~callbacks.progress_bar", f"loss_net.weights={vgg16_weights}",
            f"export.dir={tmp_path}", f"run_dir={tmp_path / 'run'}", "style=the_scream", "style.name=scream",
            "name=mine"]   # a name six_paintings does not hold (the_scream is one of its six)
    if option:
        over.append(f"warm_start={option}")
        if option == "rows_then_all":
            over.append(f"warm_start.norms_only_steps={steps // 2}")
    else:
        over += ["model.upsample=transpose", "loss.style_size=256"]
    cfg = compose("train", over)
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.pop("hydra")
    return cfg


def _loss(net, criterion, photos, painting: str) -> float:
    idx = None
    if len(net.style_names) > 1:
        idx = torch.full((photos.shape[0],), net.style_names.index(painting), dtype=torch.long)
    with torch.no_grad():
        return float(net.eval().training_step(criterion, photos, idx)[1]["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("option", OPTIONS + [None])
def test_each_warm_start_trains_and_lowers_its_loss(option, tmp_path, photos_dir, vgg16_weights):
    """Through train.py's code path: 10 steps of each start lower the objective on two fixed photos
    (the start's own step-0 network against the export, one objective); rows keeps the other
    paintings bit-identical."""
    from fast_nst.training.data.decode import resize_crop
    from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
    from fast_nst.training.module import StyleTransferModule
    from fast_nst.training.run import _apply_init_from, train

    cfg = _tiny(option, tmp_path, photos_dir, vgg16_weights)
    start = OmegaConf.create(OmegaConf.to_container(cfg))
    warm = build_warm_start(start.get("warm_start"))
    if warm:
        warm.prepare(start)
    _apply_init_from(start)
    module0 = StyleTransferModule.from_config(start)
    photos = torch.stack([pil_to_tensor(resize_crop(load_rgb(p), 64, None)) for p in list_images(photos_dir)[:2]])
    before = _loss(module0.net, module0.criterion, photos, "scream")

    result = train(cfg)
    net, info = load_network(result["export"])
    after = _loss(net, module0.criterion, photos, "scream")
    assert result["global_step"] == 10
    assert after < 0.95 * before, f"warm_start={option}: loss {before:.4g} -> {after:.4g}"
    if option == "rows":
        six, six_info = load_network(SIX)
        assert info.style_names == six_info.style_names + ["scream"] and info.kind == "cin"
        x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            for name in six_info.style_names:   # bit-identical
                assert torch.equal(net.stylize(x, net.condition(style=name)), six.stylize(x, six.condition(style=name))), name
    else:
        assert info.kind == "johnson" and info.style_names == ["scream"]
    if option in ("rows_then_all", "convs"):   # the convolutions moved away from six_paintings'
        six, _ = load_network(SIX)
        assert not torch.equal(net.state_dict()["residuals.0.body.0.1.weight"], six.state_dict()["residuals.0.body.0.1.weight"])


@pytest.mark.slow
def test_time_to_quality_mode_on_a_tiny_budget(tmp_path, vgg16_weights):
    """fast-nst quality time_to_quality: trains the recipe for 0.1 minutes (CPU clock), measures the
    checkpoint of every 0.05 minutes and tabulates minutes -> equivalent iterations."""
    recipe = (f"model=johnson_half model.width=0.25 data.image_size=48 data.batch_size=2 data.num_workers=0 "
              f"data.val_size=2 trainer.max_steps=100000 loss.style_size=96 loss_net.weights={vgg16_weights}")
    r = run_script("quality", f"time_to_quality.recipe=\"{recipe}\"", "time_to_quality.minutes=0.1",
                   "time_to_quality.every=0.05", "time_to_quality.clock=cpu", "time_to_quality.threads=1",
                   f"photos={ROOT / 'assets' / 'photos'}", "num_photos=2", "size=48", "iterations=10", "report_at=[5]",
                   f"output={tmp_path / 'out'}", f"vgg_weights={vgg16_weights}", f"cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "time to quality" in r.stdout
    table = json.loads((tmp_path / "out" / "time_to_quality.json").read_text())
    rows = table["checkpoints"]
    assert [row["minutes"] for row in rows] == [0.05, 0.1]
    assert rows[0]["global_step"] < rows[1]["global_step"] and all(row["cpu_seconds"] > 0 for row in rows)
    assert all(len(row["per_photo_equivalent_iterations"]) == 2 for row in rows)
    assert rows[1]["feedforward_loss"] < rows[0]["feedforward_loss"] * 1.5   # measured, finite
    assert table["recipe"][0] == "model=johnson_half" and (tmp_path / "out" / "export").is_dir()
