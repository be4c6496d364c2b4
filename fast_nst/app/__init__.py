"""The web page (app.py, fast-nst app): pick a network and a painting, upload photos or a video.

    page.py   `Studio` (what the page does with an upload, through `Stylizer`), the Gradio page, `serve`

May import: fast_nst.io, fast_nst.kinds, fast_nst.stylize. Nothing imports it but the command line.
"""
