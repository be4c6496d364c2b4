"""The package outside its checkout: a wheel of this tree installed into a fresh venv, run from a
temporary folder, with no PYTHONPATH. The console scripts find the configs, the bundled paintings
and the shipped models inside the installed package (fast_nst/_bundled/, see setup.py).

The venv sees this interpreter's site-packages through a .pth file (torch and the rest are not
downloaded again); that makes a .pth-based editable install of fast_nst invisible (its own .pth is
not processed), and the venv's own site-packages come first in any case."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT

pytestmark = pytest.mark.slow  # builds a 40 MB wheel and a venv: about a minute


def _run(cmd, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PYTHONUNBUFFERED="1", WANDB_MODE="offline")
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a venv holding a wheel of this checkout."""
    pytest.importorskip("setuptools", minversion="68")  # builds the wheel without downloading anything
    tmp = tmp_path_factory.mktemp("installed")
    r = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
              "-w", tmp / "wheel", ROOT], cwd=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = (tmp / "wheel").glob("fast_nst-*.whl")
    venv = tmp / "venv"
    r = _run([sys.executable, "-m", "venv", venv], cwd=tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    bin_dir = venv / "bin"
    purelib = _run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=tmp).stdout.strip()
    (Path(purelib) / "outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = _run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return bin_dir


def test_the_installed_package_is_not_the_checkout(installed, tmp_path):
    r = _run([installed / "python", "-c",
              "import fast_nst, fast_nst.io.paths as p; print(fast_nst.__file__); print(p.PROJECT_ROOT)"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    module, root = r.stdout.split()
    assert not Path(module).is_relative_to(ROOT) and Path(module).is_relative_to(installed.parent)
    assert Path(root) == Path(module).parent / "_bundled"
    for shipped in ("conf/train.yaml", "conf/stylize/stylize.yaml", "assets/styles/starry_night.jpg",
                    "assets/CREDITS.md", "checkpoints/starry_night.safetensors"):
        assert (Path(root) / shipped).is_file(), shipped


@pytest.mark.parametrize("command,expected", [
    (["fast-nst-train", "--help"], ["Train a feed-forward style-transfer network", "name: starry_night", "Examples:"]),
    (["fast-nst-stylize", "--help"], ["Stylize images in one forward pass", "max_pixels:", "tile:"]),
    (["fast-nst-optimize", "--help"], ["content: assets/photos/chelsea_cat.jpg"]),
    (["python", "-m", "fast_nst", "stylize", "--help"], ["Stylize images in one forward pass"]),
    (["fast-nst-stylize-dataset", "--help"], ["Stylize every image of a folder with Ray Data", "paintings: null"]),
])
def test_help_from_any_folder(installed, tmp_path, command, expected):
    r = _run([installed / command[0], *command[1:]], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    for text in expected:
        assert text in r.stdout, (text, r.stdout[-2000:])


def test_stylize_with_a_shipped_model_from_any_folder(installed, tmp_path):
    Image.open(ROOT / "assets" / "photos" / "chelsea_cat.jpg").convert("RGB").resize((64, 48)).save(tmp_path / "cat.jpg")
    r = _run([installed / "fast-nst-stylize", "ckpt=starry_night", "input=cat.jpg", "output=out.png", "device=cpu"],
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = Image.open(tmp_path / "out.png")
    assert out.size == (64, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.jpg", "out.png"]  # nothing else written here
    # a user error is still one line and exit 2, naming what is there
    r = _run([installed / "python", "-m", "fast_nst", "stylize", "ckpt=no_such_model", "input=cat.jpg"], cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ckpt=no_such_model" in r.stderr and "starry_night" in r.stderr, r.stderr[-2000:]


def test_the_bundled_configs_resolve_the_bundled_paintings_and_photos(installed, tmp_path):
    """What train.py composes by default (style painting, data.root) exists in the installed copy."""
    code = ("from hydra import compose, initialize_config_dir\n"
            "from fast_nst.entry import CONF\n"
            "from fast_nst.io.images import resolve_path\n"
            "from fast_nst.io.paintings import bundled_names\nfrom fast_nst.io.validate import validate_train\n"
            "with initialize_config_dir(config_dir=str(CONF), version_base='1.3'):\n"
            "    cfg = compose('train', ['style=udnie'])\n"
            "validate_train(cfg)\n"
            "print(resolve_path(cfg.style.image), resolve_path(cfg.data.root), len(bundled_names()))\n")
    r = _run([installed / "python", "-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    painting, photos, styles = r.stdout.split()
    assert Path(painting).is_file() and "_bundled" in painting and painting.endswith("udnie.jpg")
    assert Path(photos).is_dir() and len(list(Path(photos).glob("*.jpg"))) >= 10
    assert int(styles) >= 6
