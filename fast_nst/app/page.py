"""The web page (`python app.py`, options in conf/app/app.yaml): upload a photo or a short video,
pick a model and a painting, set strength and colour preservation, see the result and download it;
or stylize the browser's camera live (the Live tab).

Gradio draws the page; everything below it is plain Python that the tests call directly:
`find_models` lists the models of a folder from their metadata only (no weights loaded),
`Studio` keeps a few loaded `Stylizer`s and runs photos and videos through
`Stylizer.stylize_tensor`, the same path as stylize.py, on the runtime the `runtime` option picks
(fast_nst.stylize.runtimes). Errors a user can fix (a broken upload, a too-long clip, a missing painting)
reach the page as one message saying what to do.

The Live tab streams camera frames (Gradio streaming: the browser sends a frame every
`live_interval` seconds while none is in flight, so the network's speed sets the rate) through
`Studio.live_frame`, which answers with the stylized frame as an inline JPEG (no file per frame)
and the frames per second it is keeping up.

A model's kind decides its controls: networks that learned paintings (per-style, multi-style)
offer their paintings by name; kinds with `arbitrary_style = True` (e.g. AdaIN) take a painting
upload, or one of the bundled paintings.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import tempfile
from pathlib import Path

from PIL import Image

from fast_nst.app.studio import OUTPUT_KEEP_S, USER_ERRORS, FrameClock, Studio

log = logging.getLogger(__name__)

def page_message(text: str, hide: list[str | os.PathLike] = ()) -> str:
    """`text` with the server's folders left out of every path under them (uploads live in
    temporary folders; a visitor knows the file by its name)."""
    for root in sorted({str(Path(h)) for h in hide if h}, key=len, reverse=True):
        text = re.sub(re.escape(root.rstrip("/")) + r"/(?:[^/\s:;,'\"()]+/)*", "", text)
    return text


def _as_page_error(e: Exception, hide: list[str | os.PathLike] = ()):
    import gradio as gr

    if isinstance(e, USER_ERRORS):
        return gr.Error(page_message(str(e), hide), duration=None)
    log.exception("stylization failed")
    return gr.Error(f"Something went wrong inside fast_nst ({type(e).__name__}: {e}); the server log has the "
                    "details. Please report it.", duration=None)


def inline_jpeg(frame, quality: int = 85) -> str:
    """An <img> holding `frame` (H, W, 3 uint8) as an inline JPEG: the Live tab's output, sent in
    the stream's own message instead of as a file the browser would fetch separately."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=quality)
    return (f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}" '
            'alt="stylized camera frame" style="max-width:100%">')


def uploaded_image(**kwargs):
    """A gr.Image upload that hands the handler the uploaded file as it came. Gradio's own
    preprocessing opens it with PIL, and for any mode but RGB decodes and re-saves the whole
    picture (a 12000 px PNG: 1.9 GB) before the page's header check (max_pixels) could refuse it,
    and answers a non-image with its generic "Could not preprocess" naming server paths; the
    Studio checks and decodes the file itself, with its own messages. (The method is replaced on
    the instance: a subclass would make Gradio write a .pyi file into this package.)"""
    import types

    import gradio as gr

    component = gr.Image(**kwargs)
    gradio_preprocess = component.preprocess

    def preprocess(self, payload):
        if payload is None or payload.path is None or (payload.url or "").startswith("data:"):
            return gradio_preprocess(payload)  # a pasted picture arrives inline: Gradio stores it
        return str(payload.path)

    component.preprocess = types.MethodType(preprocess, component)
    return component


def build_page(studio: Studio, default_model: str | None = None, hide: list[str | os.PathLike] = (), *,
               live_interval: float = 0.03, live_seconds: float = 600):
    """The Gradio Blocks of the page, wired to `studio`. `hide`: server folders left out of the
    paths in messages (`page_message`). `live_interval`: seconds between camera frames the browser
    offers; `live_seconds`: how long one Live session may stream."""
    import gradio as gr

    hide = [*hide, studio.output_dir, tempfile.gettempdir()]

    choices = [(m.label, str(m.path)) for m in studio.models]
    first = next((str(m.path) for m in studio.models if default_model in (m.name, str(m.path))), choices[0][1])

    def preview(model_key, painting):
        try:
            image, caption = studio.painting_preview(studio.model(model_key), painting)
        except Exception:  # noqa: BLE001 - a preview is decoration
            image, caption = None, "Painting"
        return gr.Image(value=image, label=caption)

    def model_controls(model_key):
        entry = studio.model(model_key)
        paintings = studio.painting_choices(entry)
        value = paintings[0][1] if paintings else None
        return (gr.Dropdown(choices=paintings, value=value, visible=len(paintings) > 1 or entry.arbitrary,
                            label="Painting (bundled)" if entry.arbitrary else "Painting"),
                gr.Image(value=None, visible=entry.arbitrary),
                preview(model_key, value))

    def run_photo(photo, model_key, painting, upload, strength, keep_colors):
        try:
            r = studio.stylize_photo(photo, model_key, painting, upload, strength, keep_colors)
        except Exception as e:  # noqa: BLE001 - shown on the page
            raise _as_page_error(e, hide) from e
        return str(r.path), str(r.path), r.message

    def run_video(video, model_key, painting, upload, strength, keep_colors, progress=gr.Progress()):
        def report(done, total):
            progress((done, total) if total else done, desc="frames", unit="frames")

        try:
            r = studio.stylize_video(video, model_key, painting, upload, strength, keep_colors, progress=report)
        except Exception as e:  # noqa: BLE001 - shown on the page
            raise _as_page_error(e, hide) from e
        return str(r.path), r.message

    def run_live(frame, model_key, painting, upload, strength, keep_colors, clock):
        try:
            out, status = studio.live_frame(frame, model_key, painting, upload, strength, keep_colors, clock)
        except Exception as e:  # noqa: BLE001 - shown under the picture; the stream goes on
            if not isinstance(e, USER_ERRORS):
                log.exception("live stylization failed")
            return gr.skip(), f"**Not stylized:** {page_message(str(e), hide)}", clock
        return (inline_jpeg(out) if out is not None else gr.skip()), status, clock

    limits = (f"Photos larger than {studio.max_size} px are downscaled first; " if studio.max_size else "") + (
        f"videos up to {studio.video_max_seconds:g} s and {studio.video_max_size} px. "
        "`python stylize.py` has no such limits.")
    # delete_cache: Gradio's copies of uploads and results older than an hour go, checked every 10 min
    with gr.Blocks(title="fast_nst", analytics_enabled=False, delete_cache=(600, OUTPUT_KEEP_S)) as page:
        gr.Markdown("## fast_nst: fast neural style transfer\nUpload a photo or a short video, pick a model "
                    f"and a painting, press **Stylize**. {limits}")
        if studio.problems:
            gr.Markdown("**Skipped model files:** " + "; ".join(studio.problems))
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                model = gr.Dropdown(choices=choices, value=first, label="Model", elem_id="model")
                painting = gr.Dropdown(label="Painting", elem_id="painting")
                painting_upload = uploaded_image(type="filepath", label="Your painting (any image)", sources=["upload"],
                                           visible=False, height=180, elem_id="painting_upload")
                painting_view = gr.Image(label="Painting", interactive=False, height=180, buttons=[],
                                         elem_id="painting_view")
                strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Strength (0 = the photo, 1 = full style)",
                                     elem_id="strength")
                keep_colors = gr.Checkbox(value=False, label="Keep the photo's colours (preserve_color)",
                                          elem_id="preserve_color")
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("Photo", id="photo_tab"):
                        with gr.Row():
                            photo = uploaded_image(type="filepath", label="Photo", sources=["upload", "clipboard"],
                                             height=420, elem_id="photo")
                            photo_out = gr.Image(type="filepath", label="Stylized", interactive=False, height=420,
                                                 buttons=["download", "fullscreen"], elem_id="result")
                        photo_btn = gr.Button("Stylize", variant="primary", elem_id="stylize_photo")
                        photo_file = gr.File(label="Download", interactive=False, elem_id="download")
                    with gr.Tab("Video", id="video_tab"):
                        with gr.Row():
                            video = gr.Video(label="Video", sources=["upload"], height=360, elem_id="video")
                            video_out = gr.Video(label="Stylized", interactive=False, height=360,
                                                 elem_id="video_result")
                        video_btn = gr.Button("Stylize video", variant="primary", elem_id="stylize_video")
                    with gr.Tab("Live", id="live_tab"):
                        w, h = studio.live_size
                        gr.Markdown(f"Your camera, stylized as it streams ({w}x{h}): allow the camera, press "
                                    "**Record**; change the model, painting or strength at any time.")
                        with gr.Row():
                            camera = gr.Image(sources=["webcam"], streaming=True, label="Camera", height=h + 60,
                                              elem_id="camera", webcam_options=gr.WebcamOptions(
                                                  mirror=True, constraints={"video": {"width": {"ideal": w},
                                                                                      "height": {"ideal": h}}}))
                            live_out = gr.HTML(elem_id="live_result", min_height=h)
                        live_status = gr.Markdown(elem_id="live_status")
                status = gr.Markdown(elem_id="status")

        model.change(model_controls, model, [painting, painting_upload, painting_view])
        painting.change(preview, [model, painting], painting_view)
        page.load(model_controls, model, [painting, painting_upload, painting_view])
        common = [model, painting, painting_upload, strength, keep_colors]
        photo_btn.click(run_photo, [photo, *common], [photo_out, photo_file, status])
        video_btn.click(run_video, [video, *common], [video_out, status])
        clock = gr.State(FrameClock())  # one per visitor: frames per second of their stream
        # one frame in flight per stream; the network sets the pace (live_interval only caps it)
        camera.stream(run_live, [camera, *common, clock], [live_out, live_status, clock], stream_every=live_interval,
                      time_limit=live_seconds, concurrency_limit=None, show_progress="hidden")
    return page
