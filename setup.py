"""Build hook: an installed wheel carries the checkout's conf/, assets/ and shipped models
(checkpoints/*.safetensors) inside the package as fast_nst/_bundled/, where fast_nst.io.paths finds
them, so the console scripts work from any folder. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (folder, files shipped from it): Hydra configs, the bundled paintings and photos with their
# credits, and the model zoo (not checkpoints/runs/, which holds training checkpoints)
BUNDLED = (("conf", "**/*.yaml"), ("assets", "**/*"), ("checkpoints", "*.safetensors"))


class BuildWithBundledFiles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, which has these folders
        dest = Path(self.build_lib) / "fast_nst" / "_bundled"
        for folder, pattern in BUNDLED:
            for src in sorted((HERE / folder).glob(pattern)):
                if src.is_file():
                    out = dest / src.relative_to(HERE)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, out)


setup(cmdclass={"build_py": BuildWithBundledFiles})
