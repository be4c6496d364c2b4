"""The web page: python app.py, then open http://127.0.0.1:7860 (options: conf/app/app.yaml, --help)."""

from omegaconf import DictConfig

from fast_nst.cli import hydra_main


@hydra_main(version_base="1.3", config_path="conf/app", config_name="app")
def main(cfg: DictConfig) -> None:
    from fast_nst.app.page import serve
    from fast_nst.cli import run_cli

    run_cli(lambda: serve(cfg))


if __name__ == "__main__":
    main()
