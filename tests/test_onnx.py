"""ONNX export with dynamic sizes, checked against PyTorch with ONNX Runtime (fast_nst.stylize.onnx)."""

import pytest
import torch

from conftest import ROOT
from fast_nst.kinds import load_network
from fast_nst.models.transformer import TransformerNet
from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
from fast_nst.stylize.onnx import OnnxStylizer, export_metadata_strings, export_onnx, quantize_int8, read_onnx_metadata

MODEL = ROOT / "checkpoints" / "starry_night.safetensors"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    net, meta = load_network(MODEL)
    path = export_onnx(net, tmp_path_factory.mktemp("onnx") / "starry_night.onnx",
                       metadata=export_metadata_strings(meta))
    return net, meta, path


@pytest.mark.parametrize("size", [(157, 211), (333, 97)])
def test_onnx_runtime_matches_pytorch_at_odd_sizes(shipped, size):
    net, _, path = shipped
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
    with torch.inference_mode():
        ref = net(x)
    out = OnnxStylizer(path, threads=2)(x)
    assert out.shape == ref.shape == x.shape
    err = float((out - ref).abs().max())
    assert err < 1e-4, err  # measured ~1e-6 (float summation order)
    assert float((ref - x).abs().mean()) > 0.05  # and the network really changes the picture


def test_any_size_including_sides_too_small_to_reflect(tmp_path):
    """Sides of 1 to 7 px take the edge-padding branch of the in-graph padding, as in PyTorch."""
    torch.manual_seed(0)
    net = TransformerNet(width=0.125, upsample="nearest").eval()
    path = export_onnx(net, tmp_path / "tiny.onnx")
    st = OnnxStylizer(path, optimization="all")
    for size in [(1, 1), (3, 101), (7, 9), (8, 8), (13, 4), (64, 66)]:
        x = torch.rand(1, 3, *size)
        with torch.inference_mode():
            ref = net(x)
        err = float((st(x) - ref).abs().max())
        assert err < 1e-4, (size, err)


def test_int8_is_within_its_stated_db_of_pytorch(shipped, tmp_path):
    """quantize_int8's recipe on the zoo network keeps the PSNR `export` checks (conf/export's
    min_psnr), on a photo it was not calibrated on."""
    from omegaconf import OmegaConf

    net, _, path = shipped
    calib = [pil_to_tensor(load_rgb(p, 128)).unsqueeze(0) for p in list_images(ROOT / "assets" / "photos")[:4]]
    q = quantize_int8(path, tmp_path / "q.onnx", calib)
    assert q.stat().st_size < path.stat().st_size / 2
    photo = pil_to_tensor(load_rgb(ROOT / "assets" / "photos" / "forest_stream.jpg", 384)).unsqueeze(0)
    with torch.inference_mode():
        ref = net(photo)
    out = OnnxStylizer(q)(photo)
    psnr = 10 * torch.log10(1 / ((out - ref) ** 2).mean())
    stated = OmegaConf.load(ROOT / "conf" / "export" / "export.yaml").min_psnr
    assert psnr > stated, float(psnr)  # measured 38.3 dB here (AVX-512 VNNI; README, Runtimes)
    note = read_onnx_metadata(q)["fast_nst.onnx.quantized"]
    assert "7-bit" in note and "first and last convolution float" in note


def test_metadata_is_copied_from_the_export(shipped):
    _, meta, path = shipped
    from fast_nst.io.export import FORMAT
    from fast_nst.stylize.onnx import read_onnx_info
    from fast_nst.stylize.stylizer import Stylizer

    m = read_onnx_metadata(path)
    assert m["styles"] == [p.to_dict() for p in meta.styles] and m["network"] == meta.network
    assert m["fast_nst.vgg_weights"] == meta.vgg_weights and m["fast_nst.version"] == meta.version
    assert m["fast_nst.source_format"] == FORMAT  # the v1 file's metadata, written as the current format
    info = read_onnx_info(path)
    assert info.kind == meta.kind and info.styles == meta.styles and info.model_card == meta.model_card
    assert OnnxStylizer(path).style_name == "starry_night"
    st = Stylizer.load(path)  # the painting record reaches the Stylizer, as for .safetensors
    assert st.styles == ["starry_night"] and st.info.styles[0].sha256 == meta.styles[0].sha256


def test_bad_files_and_inputs_are_explained(shipped, tmp_path):
    _, _, path = shipped
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="junk.onnx: not a readable ONNX file"):
        read_onnx_metadata(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match="expected a \\(B, 3, H, W\\)"):
        OnnxStylizer(path)(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="optimization must be one of"):
        OnnxStylizer(path, optimization="max")


def _export(*args: str, timeout: int = 900):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fast_nst", "export", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_export_command_writes_checked_graphs_beside_the_export(tmp_path):
    import shutil

    from fast_nst.stylize.onnx import SOURCE_SHA_KEY
    from fast_nst.io.files import file_sha256

    src = tmp_path / "sn.safetensors"
    shutil.copy(MODEL, src)
    r = _export(f"ckpt={src}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "check onnx at 211x157" in r.stdout and "check onnx-int8" in r.stdout and "TOO" not in r.stdout
    for name in ("sn.onnx", "sn_int8.onnx"):
        assert read_onnx_metadata(tmp_path / name)[SOURCE_SHA_KEY] == file_sha256(src)
    assert not list(tmp_path.glob(".*.tmp"))
    r = _export("ckpt=no_such_style", timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no_such_style" in r.stderr
    r = _export(f"ckpt={src}", "runtimes=[onnx-fp16]", timeout=120)
    assert r.returncode == 2 and "choose among onnx, onnx-int8" in r.stderr


def test_stylize_py_runs_an_onnx_checkpoint(shipped, tmp_path):
    """`stylize.py ckpt=model.onnx` goes through ONNX Runtime and gives PyTorch's picture; options
    that need the PyTorch network are refused with the reason."""
    from PIL import Image

    from conftest import compose
    from fast_nst.io.images import tensor_to_pil
    from fast_nst.stylize.command import run

    _, _, path = shipped
    src = tmp_path / "odd.png"
    tensor_to_pil(pil_to_tensor(load_rgb(ROOT / "assets" / "photos" / "chelsea_cat.jpg", 151))).save(src)
    outs = {}
    for ckpt in (path, MODEL):
        outs[ckpt.suffix] = tmp_path / f"out{ckpt.suffix}.png"
        assert run(compose("stylize", [f"ckpt={ckpt}", f"input={src}", f"output={outs[ckpt.suffix]}",
                                       "device=cpu", "runtime=torch" if ckpt == MODEL else "runtime=auto"])) == 0
    a, b = (pil_to_tensor(Image.open(outs[k]).convert("RGB")) for k in (".onnx", ".safetensors"))
    assert a.shape == b.shape == pil_to_tensor(load_rgb(src)).shape
    assert float((a - b).abs().max()) <= 1 / 255 + 1e-6  # the same pixels, up to 8-bit rounding
    with pytest.raises(ValueError, match="tile= needs runtime=torch"):
        run(compose("stylize", [f"ckpt={path}", f"input={src}", "tile=256"]))


def test_onnx_picture_script(shipped, tmp_path):
    from PIL import Image

    from conftest import run_script
    from grids import GAP

    _, _, path = shipped
    out = tmp_path / "onnx.jpg"
    r = run_script("tools/onnx_picture.py", "--ckpt", str(MODEL), "--onnx", str(path), "--size", "64",
                   "--width", "60", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(out).width == 2 * 60 + GAP
