"""optimize.py and fast-nst quality follow train.py's and stylize.py's convention (fast_nst/cli.py):
bad options are found before any slow work and reported on one line without a traceback, exit 2;
an input that cannot be read is one line, exit 1; HYDRA_FULL_ERROR=1 shows the traceback."""

import pytest

from conftest import compose, run_script
from fast_nst.io.errors import ConfigError
from fast_nst.io.validate import validate_optimize, validate_quality


@pytest.mark.parametrize("overrides,expected", [
    (["content=/no/such/photo.jpg"], "content=/no/such/photo.jpg: no such file"),
    (["style=not_a_painting"], "painting 'not_a_painting': no such file and not a bundled style"),
    (["style=[starry_night,the_scream]", "style_blend=[1.0]"], "style_blend has 1 weights for 2 styles"),
    (["image_size=8"], "image_size=8 is too small for VGG"),
    (["image_size=0"], "image_size=0: must be a positive integer"),
    (["iterations=0"], "iterations=0: must be a positive integer"),
    (["style_scale=-1"], "style_scale=-1: must be a positive number"),
])
def test_optimize_options_are_checked_before_any_work(overrides, expected):
    with pytest.raises(ConfigError) as err:
        validate_optimize(compose("optimize", overrides))
    assert expected in str(err.value) and err.value.exit_code == 2, str(err.value)


def test_optimize_shipped_config_passes():
    validate_optimize(compose("optimize", []))
    validate_optimize(compose("optimize", ["style=[starry_night,the_scream]", "style_blend=[0.7,0.3]"]))


def _quality(overrides):
    from omegaconf import ListConfig

    from fast_nst.optimize.quality import QUALITY_INITS

    cfg = compose("quality", overrides)
    inits = tuple(map(str, cfg.init)) if isinstance(cfg.init, ListConfig) else (str(cfg.init),)
    validate_quality(cfg, inits, QUALITY_INITS)


@pytest.mark.parametrize("overrides,expected", [
    (["photos=/no/such/folder"], "photos=/no/such/folder: no such folder"),
    (["init=[noise,bogus]"], "init=['noise', 'bogus']: must be one or more of ['noise', 'content']"),
    (["size=0"], "size=0: must be a positive integer"),
    (["iterations=-3"], "iterations=-3: must be a positive integer"),
    (["num_photos=-1"], "num_photos=-1: must be 0 (all) or a positive integer"),
])
def test_quality_options_are_checked_before_any_work(overrides, expected):
    with pytest.raises(ConfigError) as err:
        _quality(overrides)
    assert expected in str(err.value), str(err.value)
    _quality([])  # the shipped config passes


def test_optimize_cli_exit_codes_and_one_line_errors(tmp_path, monkeypatch):
    r = run_script("optimize.py", "iterations=0", f"output={tmp_path / 'o.png'}")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "error: iterations=0: must be a positive integer" in r.stderr
    assert "Traceback" not in r.stderr and "Error executing job" not in r.stderr
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not a jpeg at all" * 50)
    r = run_script("optimize.py", f"content={bad}", "iterations=1", f"output={tmp_path / 'o.png'}")
    assert r.returncode == 1, r.stderr[-3000:]  # the input failed, the usage was fine
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert str(bad) in line and "not an image" in line and "Traceback" not in r.stderr
    assert not (tmp_path / "o.png").exists()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    r = run_script("optimize.py", "iterations=0")
    assert r.returncode != 0 and "Traceback" in r.stderr and "iterations=0" in r.stderr


def test_quality_cli_bad_options_are_one_line_exit_2(tmp_path):
    r = run_script("quality", "photos=/no/such/folder", "init=[noise,bogus]", f"output={tmp_path}")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "error: 2 config problems: init=['noise', 'bogus']" in r.stderr
    assert "photos=/no/such/folder: no such folder" in r.stderr
    assert "Traceback" not in r.stderr and "Error executing job" not in r.stderr
    r = run_script("quality", "ckpt=no_such_model", f"output={tmp_path}")
    assert r.returncode == 2 and "ckpt=no_such_model" in r.stderr and "starry_night" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
