"""Inference: photos, folders, videos and huge images through any trained network.

    stylizer.py    `Stylizer`: load an export (or a pretrained kind) and stylize images/tensors
    command.py     the stylize command (stylize.py, fast-nst stylize): files, folders, globs, videos
    tiling.py      huge photos in tiles, normalised with whole-image statistics (norm_stats.py)
    video/         video files: probe.py, streams.py, and pipeline.py (decode, stylize, encode stages);
                   temporal.py: flicker, smoothing
    color.py       luminance-only colour transfer and the strength blend
    runtimes.py    runtime=torch|onnx|onnx-int8|auto: which engine runs an export, and its graph files
    onnx.py        ONNX export of a network, and ONNX Runtime behind the same network interface
                   (OnnxNetwork: the kinds' InferenceNetwork, capabilities declared)
    export_command.py  the export command (fast-nst export): an export's graphs, checked against PyTorch

Nothing here names a kind, and only runtimes.py and onnx.py name a runtime: networks are asked what
they can do (fast_nst.kinds.base.Capabilities).

May import: fast_nst.io, fast_nst.weights, fast_nst.models, fast_nst.kinds.
"""
