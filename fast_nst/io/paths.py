"""Where the project's files are; imports nothing heavy, so console scripts start fast."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # fast_nst/


def _project_root() -> Path:
    """The folder holding conf/, assets/ and checkpoints/: the checkout when the package runs from
    one (or from an editable install), else the copy an installed wheel carries in
    fast_nst/_bundled/ (setup.py puts it there), so the configs, paintings and shipped models are
    found from any working directory."""
    for root in (PACKAGE.parent, PACKAGE / "_bundled"):
        if (root / "conf" / "train.yaml").is_file():
            return root
    return PACKAGE.parent


PROJECT_ROOT = _project_root()
CONF = PROJECT_ROOT / "conf"


def group_config(group: str, name: str) -> dict:
    """conf/<group>/<name>.yaml as a plain dict without the keys that only select it (`kind`,
    `_target_`): the one home of a config's defaults, for code that builds its object without a
    run's config (a kind's pretrained network, the paper's loss)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{name}.yaml"), resolve=True)
    for key in ("kind", "_target_", "defaults"):
        cfg.pop(key, None)
    return cfg
