import os

import pytest
import torch
from PIL import Image

from conftest import ROOT, run_script
from fast_nst import Stylizer
from fast_nst import __version__
from fast_nst.io.export import export_network, read_export
from fast_nst.kinds import load_network
from fast_nst.kinds import get_kind
from fast_nst.io.paintings import Painting
from fast_nst.stylize.stylizer import find_checkpoint

TINY = dict(width=0.25, norm="instance", upsample="nearest", num_res_blocks=5, tanh_scale=1.0)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    torch.manual_seed(0)
    net = get_kind("johnson")([Painting(name="tiny", image="x.jpg")], **TINY)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    export_network(net, path, loss={"style_weight": 1.0}, vgg_weights="file:test")
    return net.eval(), path


def test_export_roundtrip_and_metadata(tiny_export):
    net, path = tiny_export
    loaded, info = load_network(path)
    assert info.kind == "johnson" and info.network == net.config and info.style_names == ["tiny"]
    assert info.vgg_weights == "file:test" and info.version == __version__ != "unknown"
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp files


def test_export_replaces_atomically_and_bad_files_are_explained(tiny_export, tmp_path):
    net, _ = tiny_export
    p = tmp_path / "m.safetensors"
    export_network(net, p)
    export_network(net, p)  # overwrite in place
    assert read_export(p).network == net.config
    (tmp_path / "torn.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ValueError, match="torn.safetensors"):
        read_export(tmp_path / "torn.safetensors")


def test_stylizer_handles_modes_sizes_and_exif(tiny_export, tmp_path):
    _, path = tiny_export
    st = Stylizer.load(path, device="cpu")
    gray = Image.new("L", (37, 23), 128)
    assert st(gray).size == (37, 23) and st(gray).mode == "RGB"
    rgba = Image.new("RGBA", (20, 30), (255, 0, 0, 77))
    out = st(rgba)
    assert out.mode == "RGBA" and out.getchannel("A").getextrema() == (77, 77)
    # EXIF orientation 6 (rotate 90 CW): stored 40x20, displayed 20x40
    exif = Image.Exif()
    exif[0x0112] = 6
    f = tmp_path / "rot.jpg"
    Image.new("RGB", (40, 20), (10, 200, 30)).save(f, exif=exif)
    assert st(f).size == (20, 40)
    assert st(Image.new("RGB", (300, 100)), max_size=150).size == (150, 50)


def test_find_checkpoint_by_style_name(tiny_export, tmp_path):
    _, path = tiny_export
    assert find_checkpoint("tiny", [path.parent]) == path
    with pytest.raises(FileNotFoundError, match="tiny"):
        find_checkpoint("nope", [path.parent])


def test_stylize_cli_folder_with_a_bad_file(tiny_export, tmp_path):
    _, path = tiny_export
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.new("RGB", (33, 17), (200, 20, 20)).save(src / "a.jpg")
    Image.new("RGB", (33, 17), (20, 200, 20)).save(src / "sub" / "b.png")
    Image.new("L", (18, 19)).save(src / "c.png")
    (src / "bad.jpg").write_bytes(b"garbage")
    out = tmp_path / "out"
    r = run_script("stylize.py", f"ckpt={path}", f"input={src}", f"output={out}", "device=cpu")
    assert r.returncode == 1, r.stderr  # one input failed, the rest are written
    assert "bad.jpg" in r.stderr
    assert Image.open(out / "a.jpg").size == (33, 17)
    assert Image.open(out / "sub" / "b.png").size == (33, 17)
    assert Image.open(out / "c.png").size == (18, 19)
    assert not (out / "bad.jpg").exists()


def test_stylize_cli_missing_checkpoint_is_explained(tmp_path):
    r = run_script("stylize.py", "ckpt=no_such_style", f"input={tmp_path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr  # bad usage: one line, exit 2
    assert "no_such_style" in r.stderr and "train.py" in r.stderr
