"""Serving the page (`serve`, for python app.py and fast-nst app): its temporary folder
(`Workspace`, removed on exit and on SIGTERM; folders of dead servers removed at start-up)."""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from fast_nst.io.errors import ConfigError
from fast_nst.app.page import build_page
from fast_nst.app.studio import WORKSPACE_PREFIX, Studio

log = logging.getLogger(__name__)

def remove_stale_workspaces(tmp: str | os.PathLike | None = None) -> list[Path]:
    """Remove the temporary folders of servers that are gone (killed without a chance to clean
    up): <tmp>/fast_nst_page_<pid>_* of this user whose process no longer runs. Returns them."""
    removed = []
    for d in Path(tmp or tempfile.gettempdir()).glob(f"{WORKSPACE_PREFIX}*_*"):
        pid = d.name[len(WORKSPACE_PREFIX):].split("_", 1)[0]
        try:
            if not pid.isdigit() or not d.is_dir() or d.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # still running: not ours to remove
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except OSError:  # PermissionError: another user's process of that pid is running
            continue
    return removed


class Workspace:
    """The server's temporary folder, <tmp>/fast_nst_page_<pid>_*: Gradio's uploads and cache
    (GRADIO_TEMP_DIR, unless the user set it) and the results. Removed when the server stops: on
    Ctrl-C, on SIGTERM (turned into the same shutdown) or on an error; a server killed outright
    leaves it to the next start (`remove_stale_workspaces`)."""

    def __enter__(self) -> "Workspace":
        remove_stale_workspaces()
        self.path = Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{os.getpid()}_"))
        self._gradio_env = os.environ.get("GRADIO_TEMP_DIR")
        if self._gradio_env is None:
            os.environ["GRADIO_TEMP_DIR"] = str(self.path / "gradio")
        self._sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.signal(signal.SIGTERM, self._stop)
        return self

    @staticmethod
    def _stop(signum, frame) -> None:
        raise KeyboardInterrupt  # Gradio's launch() closes the server on it and returns

    def __exit__(self, *exc) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
        if self._gradio_env is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        shutil.rmtree(self.path, ignore_errors=True)


def serve(cfg) -> None:
    """`python app.py`: build the page from conf/app/app.yaml's options and serve it until Ctrl-C
    or SIGTERM; its temporary files go with it (`Workspace`)."""
    for key in ("max_size", "max_pixels", "video_max_seconds", "video_max_size", "max_upload_mb", "live_interval",
                "live_seconds"):
        v = cfg.get(key)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ConfigError(f"{key}={v}: must be a positive number"
                              + (" or null" if key in ("max_size", "max_pixels") else ""))
    size = list(cfg.live_size) if cfg.get("live_size") is not None else []
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ConfigError(f"live_size={cfg.get('live_size')}: give [width, height] in pixels, e.g. [320, 240]")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    with Workspace() as work:
        try:  # imported inside the workspace, so Gradio's temporary folder is the workspace's
            import gradio as gr
        except ImportError as e:
            raise ConfigError("the web page needs Gradio: pip install -e '.[app]' (or pip install gradio)") from e
        studio = Studio(cfg.models_dir, pretrained=list(cfg.get("pretrained") or ()), device=cfg.device,
                        runtime=cfg.runtime, max_size=cfg.max_size, max_pixels=cfg.max_pixels,
                        video_max_seconds=cfg.video_max_seconds, video_max_size=cfg.video_max_size,
                        batch_size=cfg.batch_size, cached_models=cfg.cached_models, quality=cfg.quality,
                        live_size=tuple(size), output_dir=work.path / "results")
        print(f"fast_nst app: {len(studio.models)} models from {cfg.models_dir}: "
              f"{', '.join(m.name for m in studio.models)} (runtime={cfg.runtime})", flush=True)
        page = build_page(studio, cfg.get("model"), hide=[work.path], live_interval=cfg.live_interval,
                          live_seconds=cfg.live_seconds)
        # One stylization at a time: the network already uses every core, a second one would only
        # slow both down. Others wait in the queue and the page shows their place.
        page.queue(default_concurrency_limit=1)
        # System fonts: the default theme fetches web fonts from the internet.
        theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                  font_mono=["ui-monospace", "monospace"])
        try:
            page.launch(server_name=cfg.host, server_port=cfg.port, max_file_size=f"{cfg.max_upload_mb}mb",
                        inbrowser=False, show_error=True, theme=theme, allowed_paths=[str(studio.output_dir)],
                        footer_links=[], ssr_mode=False)
        finally:
            page.close()
