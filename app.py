"""The web page: python app.py, then open http://127.0.0.1:7860 (options: conf/app/app.yaml, --help)."""

from omegaconf import DictConfig

from fast_nst.cli import hydra_main


@hydra_main(version_base="1.3", config_path="conf/app", config_name="app")
def main(cfg: DictConfig) -> None:
    import os

    # Before torch loads OpenMP: its idle threads sleep instead of spinning. The page shares the
    # CPU with the browser and other requests; spinning threads slowed the Live tab ~20x on a
    # busy 2-core machine (README, Web page).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from fast_nst.app import serve
    from fast_nst.cli import run_cli

    run_cli(lambda: serve(cfg))


if __name__ == "__main__":
    main()
