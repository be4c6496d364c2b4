"""The web page (app.py, fast-nst app): pick a network and a painting, upload photos or a video,
or stylize the camera live.

    models.py   `find_models`: the exports and graphs of a folder, from their metadata
    studio.py   `Studio`: what the page does with an upload, through `Stylizer`
    page.py     the Gradio page (`build_page`): tabs, controls, messages
    server.py   `serve`: the server and its temporary folder

May import: fast_nst.io, fast_nst.kinds, fast_nst.stylize. Nothing imports it but the command line.
"""
