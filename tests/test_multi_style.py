"""Many paintings in one network (kind `cin`): training through train.py with real VGG weights and
photos, per-painting losses and grid, the export listing its paintings, stylize.py's style /
style_weights / style=all, add_style leaving the old paintings bit-identical, exact resume."""

import csv

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from conftest import ROOT, compose, run_script
from fast_nst import Stylizer
from fast_nst.io.export import read_export, training_ingredients
from fast_nst.kinds import StyleChoiceError

PAINTINGS = ["starry_night", "the_scream"]


def _rows(run_dir):
    return list(csv.DictReader(open(next(run_dir.rglob("metrics.csv")))))


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory, photos_dir, vgg16_weights):
    """A 2-painting network trained for 40 steps at 64 px (~2 min on 2 cores)."""
    tmp = tmp_path_factory.mktemp("multi")
    ckpts, run = tmp / "checkpoints", tmp / "run"
    r = run_script(
        "train.py", "experiment=multi_style", f"styles=[{','.join(PAINTINGS)}]", "name=duo", "data=folder",
        f"data.root={photos_dir}", "data.image_size=64", "data.num_workers=0", "data.val_size=2",
        "model.width=0.25", "steps_per_style=20", "trainer.val_check_interval=20", "trainer.log_every_n_steps=1",
        "logger=csv", f"loss_net.weights={vgg16_weights}", f"export.dir={ckpts}", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    return ckpts / "duo.safetensors", run, tmp


def test_multi_style_run_logs_each_painting_and_exports_them_all(multi_run):
    export, run, _ = multi_run
    rows = _rows(run)
    assert max(int(r["step"]) for r in rows) == 39  # steps_per_style 20 x 2 paintings
    for name in PAINTINGS:  # the style loss of every painting falls
        series = [float(r[f"train/style/{name}"]) for r in rows if r.get(f"train/style/{name}")]
        assert len(series) >= 30, name  # balanced draws: both paintings in (almost) every step
        first, last = sum(series[:4]) / 4, sum(series[-4:]) / 4
        assert last < 0.8 * first, f"{name}: style loss did not fall: {series}"
        val = [float(r[f"val/style/{name}"]) for r in rows if r.get(f"val/style/{name}")]
        assert len(val) == 2  # validation at steps 20 and 40, one value per painting
    grid = Image.open(sorted(run.rglob("samples/step_*.png"))[-1])
    # columns content | starry_night | the_scream, one row per val photo (64 px cells, 2 px padding)
    assert grid.size == (3 * 66 + 2, 2 * 66 + 2)

    info = read_export(export)
    assert info.kind == "cin" and info.style_names == PAINTINGS
    assert [p.credit for p in info.styles] == ["Vincent van Gogh, 1889. Public domain", "Edvard Munch, 1893. Public domain"]
    assert set(info.thumbnails) == set(PAINTINGS)
    card = info.model_card
    assert card["steps"] == 40 and card["recipe"]["experiment"] == "multi_style" and card["train_seconds"] > 0
    assert card["training_photos"]["count"] == 8 and "styles=[starry_night,the_scream]" in card["command"]
    assert info.loss["style_weight"] == 2.0 and info.loss_net["arch"] == "vgg16"


def test_stylize_cli_style_all_mix_and_missing_style(multi_run, tmp_path):
    export, _, _ = multi_run
    photo = ROOT / "assets" / "photos" / "chelsea_cat.jpg"
    r = run_script("stylize.py", f"ckpt={export}", f"input={photo}", "style=all", f"output={tmp_path / 'all'}",
                   "max_size=96", "device=cpu")
    assert r.returncode == 0, r.stderr
    outs = {n: torch.tensor(list(Image.open(tmp_path / "all" / n / "chelsea_cat.jpg").getdata()), dtype=torch.float)
            for n in PAINTINGS}
    assert (outs["starry_night"] - outs["the_scream"]).abs().mean() > 2  # two different paintings

    r = run_script("stylize.py", f"ckpt={export}", f"input={photo}", "style_weights={starry_night: 0.5, the_scream: 0.5}",
                   f"output={tmp_path / 'mix.png'}", "max_size=96", "device=cpu")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "mix.png").size == (96, 64)

    r = run_script("stylize.py", f"ckpt={export}", f"input={photo}", f"output={tmp_path / 'x.png'}")
    assert r.returncode == 2 and "style=" in r.stderr and "starry_night, the_scream" in r.stderr
    r = run_script("stylize.py", f"ckpt={export}", f"input={photo}", "style=udnie", f"output={tmp_path / 'x.png'}")
    assert r.returncode == 2 and "udnie" in r.stderr and "starry_night, the_scream" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_one_hot_weights_equal_style_and_mixing_is_between(multi_run):
    export, _, _ = multi_run
    st = Stylizer.load(export, device="cpu")
    x = torch.rand(2, 3, 37, 53)
    a, b = st.stylize_tensor(x, style="starry_night"), st.stylize_tensor(x, style="the_scream")
    assert torch.equal(st.stylize_tensor(x, style_weights={"starry_night": 1.0}), a)
    assert torch.equal(st.stylize_tensor(x, style_weights={"starry_night": 0.0, "the_scream": 3.0}), b)  # normalised
    assert torch.equal(st.stylize_tensor(x, style_weights=[1, 0]), a)  # a list is in the network's order
    half = st.stylize_tensor(x, style_weights={"starry_night": 0.5, "the_scream": 0.5})
    assert (half - a).abs().mean() < (b - a).abs().mean() and (half - b).abs().mean() < (b - a).abs().mean()
    for bad in ({"monet": 1.0}, {"starry_night": -1.0, "the_scream": 2.0}, {"starry_night": 0.0}):
        with pytest.raises(StyleChoiceError):
            st.stylize_tensor(x, style_weights=bad)
    with pytest.raises(StyleChoiceError, match="starry_night, the_scream"):
        st.stylize_tensor(x)
    # strength blends with the photo: 0 is the photo itself, in between is in between
    torch.testing.assert_close(st.stylize_tensor(x, style="the_scream", strength=0.0), x)
    mid = st.stylize_tensor(x, style="the_scream", strength=0.5)
    torch.testing.assert_close(mid, (x + b) / 2, atol=1e-6, rtol=0)
    with pytest.raises(StyleChoiceError, match="strength"):
        st.stylize_tensor(x, style="the_scream", strength=1.5)


def test_training_ingredients_of_each_painting(multi_run):
    export, _, _ = multi_run
    info = read_export(export)
    with pytest.raises(ValueError, match="choose one with style="):
        training_ingredients(info)
    ing = training_ingredients(info, style="the_scream")
    assert ing.painting_file.name == "the_scream.jpg" and ing.painting_file.is_file()
    scream = next(p for p in info.styles if p.name == "the_scream")
    assert ing.style_weight_scale == scream.weight and ing.loss == info.loss and ing.style == "the_scream"


def test_add_style_trains_only_the_new_painting(multi_run, photos_dir, vgg16_weights):
    export, _, tmp = multi_run
    run = tmp / "add_run"
    r = run_script(
        "train.py", "experiment=add_style", f"init_from={export}", "styles=[great_wave]", "name=trio", "data=folder",
        f"data.root={photos_dir}", "data.image_size=64", "data.num_workers=0", "data.val_size=2",
        "steps_per_style=8", "trainer.val_check_interval=8", "trainer.log_every_n_steps=1", "logger=csv",
        f"loss_net.weights={vgg16_weights}", f"export.dir={export.parent}", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    old, new = Stylizer.load(export, device="cpu"), Stylizer.load(export.parent / "trio.safetensors", device="cpu")
    assert new.styles == PAINTINGS + ["great_wave"]
    x = torch.rand(2, 3, 48, 64)
    for name in PAINTINGS:  # bit-identical, both layouts
        assert torch.equal(old.stylize_tensor(x, style=name), new.stylize_tensor(x, style=name)), name
    contiguous = Stylizer(new.net, new.info, device="cpu", channels_last=False)
    assert torch.equal(Stylizer(old.net, old.info, device="cpu", channels_last=False).stylize_tensor(x, style="the_scream"),
                       contiguous.stylize_tensor(x, style="the_scream"))
    # the new painting trained: its rows moved away from where they started (the old rows' mean)
    rows = [m for m in new.net.conditional_norms()][0].weight
    assert (rows[2] - rows[:2].mean(0)).abs().max() > 1e-4
    series = [float(r["train/style"]) for r in _rows(run) if r.get("train/style")]
    assert sum(series[-3:]) / 3 < sum(series[:3]) / 3, series
    # adding a painting the network already has, or overwriting the base export, is refused
    r = run_script("train.py", "experiment=add_style", f"init_from={export}", "styles=[the_scream]", "name=again",
                   f"loss_net.weights={vgg16_weights}", f"export.dir={export.parent}", "logger=none",
                   f"hydra.run.dir={tmp / 'refused'}")
    assert r.returncode != 0 and "already has ['the_scream']" in r.stderr


class StopAtStep(pl.Callback):
    """Stops a run after `step` optimizer steps, as a kill would (last.ckpt is written every step)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_multi_style_resume_draws_the_same_paintings(tmp_path, photos_dir, vgg16_weights):
    """Stopped after 2 of 5 steps and resumed == 5 steps straight, for a network whose every image
    draws a painting (a function of seed and step) and whose learning rate follows a cosine schedule."""
    from hydra.core.hydra_config import HydraConfig
    from safetensors.torch import load_file

    from fast_nst.training.run import train

    def run(name, stop=None, resume=None):
        cfg = compose("train", [
            "experiment=multi_style", "styles=[starry_night,the_scream,udnie]", "data=folder",
            f"data.root={photos_dir}", "data.image_size=32", "data.batch_size=2", "data.num_workers=0",
            "data.val_size=2", "model.width=0.25", "steps_per_style=null", "trainer.max_steps=5",
            "optim.scheduler=cosine", "trainer.val_check_interval=100", "logger=none", "~callbacks.progress_bar",
            "callbacks.model_checkpoint.every_n_train_steps=1", f"loss_net.weights={vgg16_weights}",
            f"export.dir={tmp_path / name}", f"run_dir={tmp_path / name / 'run'}",
            f"ckpt_path={resume}" if resume else "ckpt_path=null"]
            + ([f"+callbacks.stop._target_={__name__}.StopAtStep", f"+callbacks.stop.step={stop}"] if stop else []))
        HydraConfig.instance().set_config(cfg)
        return train(cfg)

    straight = run("a")
    assert run("b", stop=2)["global_step"] == 2
    resumed = run("b", resume="last")
    assert straight["global_step"] == resumed["global_step"] == 5
    wa, wb = load_file(str(straight["export"])), load_file(str(resumed["export"]))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    # the model card counts the wall time of both sessions
    assert read_export(resumed["export"]).model_card["train_seconds"] > 0


def test_multi_style_grid_script(multi_run, tmp_path):
    export, _, _ = multi_run
    out = tmp_path / "grid.jpg"
    r = run_script("tools/multi_style_grid.py", "--ckpt", str(export), "--photo",
                   str(ROOT / "assets" / "photos" / "chelsea_cat.jpg"), "--size", "96", "--cell-height", "48",
                   "--steps", "3", "--device", "cpu", "--out", str(out))
    assert r.returncode == 0, r.stderr
    grid = Image.open(out)
    # 3 rows of 48 px cells + labels; the mixing row is the widest: 2 paintings + 3 mixes
    assert grid.height > 3 * 48 and grid.width > 5 * 48
    r = run_script("tools/multi_style_grid.py", "--ckpt", str(export), "--photo", "x.jpg", "--mix", "a", "b")
    assert r.returncode != 0 and "starry_night, the_scream" in r.stderr
