"""fast_nst: fast neural style transfer (Johnson et al. 2016) with Lightning, Hydra and W&B."""

from fast_nst.io.version import __version__


def __getattr__(name):
    # Lazy so `import fast_nst` stays cheap for CLI start-up and config tests.
    if name == "Stylizer":
        from fast_nst.stylize.stylizer import Stylizer

        return Stylizer
    raise AttributeError(name)


__all__ = ["Stylizer", "__version__"]
