"""Bad options are reported before any slow work, naming the option and what to do; the CLIs
print user errors on one line (HYDRA_FULL_ERROR=1 shows the traceback) and exit 0 ok, 1 partial
failure, 2 bad usage; stylize.py on a folder of bad images writes the good ones and names the rest."""

import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import compose, run_script
from fast_nst.io.errors import ConfigError
from fast_nst.io.export import export_network
from fast_nst.kinds import get_kind
from fast_nst.io.paintings import Painting
from fast_nst.io.validate import validate_train
from image_zoo import make_zoo


@pytest.mark.parametrize("overrides,expected", [
    (["style.image=no/such/painting.jpg"], "style.image=no/such/painting.jpg: no such file"),
    (["data=folder"], "data.root is required: add data.root=DIR"),
    (["data=folder", "data.root=/no/such/photos"], "data.root=/no/such/photos: no such folder"),
    (["data.val_root=/no/such/val"], "data.val_root=/no/such/val: no such folder"),
    (["data.batch_size=0"], "data.batch_size=0: must be a positive integer"),
    (["data.image_size=-8"], "data.image_size=-8: must be a positive integer"),
    (["trainer.max_steps=0"], "trainer.max_steps=0: must be a positive integer"),
    (["optim.lr=0"], "optim.lr=0: must be a positive number"),
])
def test_train_options_are_checked_before_any_work(overrides, expected):
    cfg = compose("train", overrides)
    t = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        validate_train(cfg)
    assert time.perf_counter() - t < 1.0
    assert expected in str(err.value), str(err.value)
    assert err.value.exit_code == 2


def test_a_missing_painting_lists_the_bundled_styles():
    with pytest.raises(ConfigError, match=r"style=\{.*starry_night.*udnie"):
        validate_train(compose("train", ["style.image=nope.jpg"]))


def test_an_export_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="export.dir=.*is not a folder"):
        validate_train(compose("train", [f"export.dir={tmp_path / 'file' / 'sub'}"]))


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError, match="2 config problems: data.batch_size=0.*trainer.max_steps=-1"):
        validate_train(compose("train", ["data.batch_size=0", "trainer.max_steps=-1"]))


def test_the_shipped_configs_pass():
    for overrides in ([], ["experiment=cpu_demo"], ["style=udnie", "model=johnson_half"]):
        validate_train(compose("train", overrides))


def test_train_cli_bad_option_is_one_line_and_exit_2(tmp_path):
    r = run_script("train.py", "data=folder", "data.root=/no/such/photos", "logger=none",
                   f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "error: data.root=/no/such/photos: no such folder" in r.stderr
    assert "Traceback" not in r.stderr and "Error executing job" not in r.stderr


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    net = get_kind("johnson")([Painting(name="tiny", image="x.jpg")], width=0.25, norm="instance",
                              upsample="nearest", num_res_blocks=5, tanh_scale=1.0)
    export_network(net, path)
    return path


def test_stylize_cli_user_error_exit_2_and_full_error_shows_the_traceback(tiny_export, tmp_path, monkeypatch):
    r = run_script("stylize.py", f"ckpt={tiny_export}", f"input={tmp_path}/missing.jpg")
    assert r.returncode == 2, r.stderr[-3000:]
    assert f"error: input={tmp_path}/missing.jpg: no such file or folder" in r.stderr
    assert "Traceback" not in r.stderr
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    r = run_script("stylize.py", f"ckpt={tiny_export}", f"input={tmp_path}/missing.jpg", "batch_size=0")
    assert r.returncode != 0 and "Traceback" in r.stderr and "batch_size=0" in r.stderr


def test_stylize_a_folder_of_bad_images_writes_the_good_ones_and_names_the_rest(tiny_export, tmp_path, capsys):
    from fast_nst.stylize import command as stylize_cli

    zoo = make_zoo(tmp_path / "zoo")
    out = tmp_path / "out"
    cfg = compose("stylize", [f"ckpt={tiny_export}", f"input={tmp_path / 'zoo'}", f"output={out}", "device=cpu"])
    width = stylize_cli.console.width
    stylize_cli.console.width = 1000  # one line per failure, unwrapped
    try:
        failed = stylize_cli.run(cfg)
    finally:
        stylize_cli.console.width = width
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(("skip ", "failed "))]
    inputs = stylize_cli.list_images(tmp_path / "zoo")
    outputs = stylize_cli.plan_outputs(inputs, tmp_path / "zoo", str(out), "tiny")
    assert len(inputs) >= 20 and failed == len(lines) >= 7, err  # the 7 unreadable files; 1x1 px is stylized
    for f, o in zip(inputs, outputs):  # each input is either written or named on one line
        named = [ln for ln in lines if str(f) in ln or str(o) in ln]
        assert o.is_file() != bool(named) and len(named) <= 1, (f.name, named)
    specimens = {s.name: s for s in zoo}
    for name in ("zero_bytes.jpg", "truncated.jpg", "random_bytes.jpg", "notes.png", "bomb.png", "vector.jpg"):
        assert not (out / name).with_suffix(Path(name).suffix).exists(), name
    for name in ("rgba.png", "cmyk.jpg", "rgb16.png", "grey_alpha_LA.png", "animated.gif", "lossless.webp"):
        o = outputs[inputs.index(specimens[name].path)]
        assert Image.open(o).size == Image.open(specimens[name].path).size, name
    assert failed + sum(o.is_file() for o in outputs) == len(inputs)
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(o for o in outputs if o.is_file())  # no temp files


def test_stylize_a_failure_inside_the_network_fails_that_input_only(tiny_export, tmp_path, monkeypatch, capsys):
    from fast_nst.stylize import command as stylize_cli
    from fast_nst.stylize.stylizer import Stylizer

    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (40, 30), (200, 20, 20)).save(src / "big.png")
    Image.new("RGB", (20, 16), (20, 200, 20)).save(src / "small.png")
    real = Stylizer.stylize_batch

    def oom_on_big(self, images, **style):  # strength / style choice, as stylize_cli passes them
        if images[0].size == (40, 30):
            raise RuntimeError("CUDA out of memory. Tried to allocate 9 GiB")
        return real(self, images, **style)

    monkeypatch.setattr(Stylizer, "stylize_batch", oom_on_big)
    out = tmp_path / "out"
    failed = stylize_cli.run(compose("stylize", [f"ckpt={tiny_export}", f"input={src}", f"output={out}", "device=cpu"]))
    assert failed == 1
    assert (out / "small.png").is_file() and not (out / "big.png").exists()
    assert "out of memory" in capsys.readouterr().err
