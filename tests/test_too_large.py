"""Images too large to decode are refused from their header, before any pixel is allocated, with a
message that names the file, the size and the option that raises the limit (stylize.py's
max_pixels, with tile= for bounded memory; training's data.max_image_pixels) instead of running out
of memory. PIL's decompression-bomb warning (from 89.5 Mpx) becomes that error; its hard error
(from 179 Mpx) gives way to a raised limit."""

import warnings

import pytest
from PIL import Image

from conftest import compose
from fast_nst.io.errors import ConfigError
from fast_nst.io.images import ImageTooLarge, PixelLimit, open_image, read_header
from fast_nst.io.validate import validate_stylize, validate_train
from fast_nst.stylize.runtimes import RUNTIMES
from image_zoo import raw_png

PIL_WARNS = Image.MAX_IMAGE_PIXELS  # 89,478,485: PIL's DecompressionBombWarning threshold


def _header_only(path, width, height):
    """A PNG whose header claims width x height (the pixel data is a few bytes: never decoded)."""
    path.write_bytes(raw_png(width, height, 8, 2))
    return path


def test_the_configs_default_is_pils_bomb_warning_threshold():
    assert compose("stylize", ["ckpt=x", "input=y"]).max_pixels == PIL_WARNS
    assert compose("train", []).data.max_image_pixels == PIL_WARNS


def test_where_pil_only_warns_the_limit_refuses_naming_file_size_and_option(tmp_path):
    big = _header_only(tmp_path / "scan.png", 10_000, 9_000)  # 90 Mpx: PIL would warn and decode
    limit = PixelLimit(PIL_WARNS, "max_pixels", "with tile=512 stylizing it keeps memory bounded")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(ImageTooLarge) as err:
            open_image(big, limit)
    msg = str(err.value)
    for part in (str(big), "10000x9000 px = 90.0 Mpx", "limit of 89.5 Mpx", "max_pixels=89478485",
                 "0.3 GiB", "raise the limit (max_pixels=90000000)", "tile=512"):
        assert part in msg, (part, msg)
    assert Image.MAX_IMAGE_PIXELS == PIL_WARNS  # PIL's global is left as it was


def test_a_raised_limit_goes_past_pils_hard_error_and_a_lower_one_is_kept(tmp_path):
    huge = _header_only(tmp_path / "panorama.png", 20_000, 10_000)  # 200 Mpx: PIL raises from 179 Mpx
    with pytest.raises(ImageTooLarge, match="could be decompression bomb"):
        read_header(huge)  # no limit given: PIL's own error, as an ImageError
    h = read_header(huge, limit=PixelLimit(250_000_000, "max_pixels"))
    assert (h.width, h.height) == (20_000, 10_000)
    assert read_header(huge, limit=PixelLimit(None, "max_pixels")).width == 20_000  # null: no limit
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(small)
    with pytest.raises(ImageTooLarge, match=r"small.png: too large to decode: 40x30 px.*max_pixels=1000\)"):
        open_image(small, PixelLimit(1000, "max_pixels"))
    assert open_image(small, PixelLimit(1200, "max_pixels")).size == (40, 30)
    assert Image.MAX_IMAGE_PIXELS == PIL_WARNS


def test_stylize_refuses_the_large_file_and_writes_the_others(tmp_path, capsys):
    import torch

    from fast_nst.stylize import command as stylize_cli
    from fast_nst.io.export import export_network
    from fast_nst.kinds import get_kind
    from fast_nst.io.paintings import Painting

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    export_network(get_kind("johnson")([Painting(name="tiny", image="x.jpg")], width=0.25, norm="instance",
                                       upsample="nearest", num_res_blocks=5, tanh_scale=1.0), ckpt)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (48, 40), (20, 120, 200)).save(src / "big.png")     # 1920 px
    Image.new("RGB", (32, 24), (200, 120, 20)).save(src / "small.png")   # 768 px
    cfg = compose("stylize", [f"ckpt={ckpt}", f"input={src}", f"output={out}", "device=cpu", "max_pixels=1000"])
    width = stylize_cli.console.width
    stylize_cli.console.width = 1000  # one line per failure, unwrapped
    try:
        assert stylize_cli.run(cfg) == 1  # one input failed: exit code 1
    finally:
        stylize_cli.console.width = width
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("skip "))
    assert str(src / "big.png") in line and "48x40 px" in line and "max_pixels=1000)" in line
    assert "tile=512" in line and "max_size=" in line
    assert sorted(p.name for p in out.iterdir()) == ["small.png"]


def test_training_skips_and_counts_a_photo_over_data_max_image_pixels(tmp_path):
    from conftest import data_module

    for i, size in enumerate([(40, 40), (40, 40), (40, 40), (120, 100)]):
        Image.new("RGB", size, (50 * i, 90, 160)).save(tmp_path / f"p{i}.png")
    dm = data_module(root=str(tmp_path), image_size=32, batch_size=1, num_workers=0, val_size=0,
                     max_image_pixels=10_000)
    dm.setup("fit")
    assert len(dm.train_set) == 3
    (reason,) = dm.skipped
    assert str(tmp_path / "p3.png") in reason and "120x100 px" in reason
    assert "data.max_image_pixels=10000" in reason and "downscale the photo" in reason


def test_non_positive_limits_are_config_errors():
    with pytest.raises(ConfigError, match="max_pixels=0: must be a positive integer"):
        validate_stylize(compose("stylize", ["ckpt=x", "input=y", "max_pixels=0"]), RUNTIMES)
    validate_stylize(compose("stylize", ["ckpt=x", "input=y", "max_pixels=null"]), RUNTIMES)
    with pytest.raises(ConfigError, match="data.max_image_pixels=-1: must be a positive integer"):
        validate_train(compose("train", ["data.max_image_pixels=-1"]))
