"""fast_nst: fast neural style transfer (Johnson et al. 2016) with Lightning, Hydra and W&B."""

from fast_nst.io.version import __version__


def _register_config_resolvers() -> None:
    """Interpolations the configs use: ${stem:PATH} is a file's name without its extension
    (conf/style/file.yaml names a painting after its file); an empty PATH gives "painting"."""
    from pathlib import PurePath

    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("stem"):
        OmegaConf.register_new_resolver("stem", lambda path: PurePath(str(path)).stem if path else "painting")


_register_config_resolvers()


def __getattr__(name):
    # Lazy so `import fast_nst` stays cheap for CLI start-up and config tests.
    if name == "Stylizer":
        from fast_nst.stylize.stylizer import Stylizer

        return Stylizer
    raise AttributeError(name)


__all__ = ["Stylizer", "__version__"]
