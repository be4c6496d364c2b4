"""Runtimes: which engine runs an exported network, and where its ONNX graphs live.

    runtime=torch       the `.safetensors` network in PyTorch (any device, float16, tiles)
    runtime=onnx        its ONNX graph in ONNX Runtime, float32 (CPU)
    runtime=onnx-int8   its int8 graph (CPU; quantize_int8's recipe)
    runtime=auto        AUTO_CPU on a CPU when that graph is there and nothing asks for PyTorch
                        (tile=, half=, a CUDA device, a kind without a graph), else torch

An export's graphs sit next to it: `<name>.onnx` and `<name>_int8.onnx` (written by
`python -m fast_nst export ckpt=NAME` and by training's export). Each records the sha256 of the
`.safetensors` it was made from, so a graph left over from an earlier export of the same name
is never used for a new one. A kind's pretrained weights (ckpt=magenta: no file) are identified
by the sha256 of their tensors instead, and their graphs live in the cache. Asked for explicitly
(runtime=onnx / onnx-int8), a missing graph is built once into the cache
(`$FAST_NST_CACHE/onnx/`, see weights_cache_dir); runtime=auto never builds, it runs PyTorch and
says how to make the graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from fast_nst.io.errors import ConfigError

log = logging.getLogger("fast_nst")

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
GRAPHS = ("onnx", "onnx-int8")           # the runtimes that run an ONNX graph
# What runtime=auto runs on a CPU when the graph is there: measured in benchmarks/bench_runtimes.py
# (docs/export.md, Runtimes): speed and quality of each runtime on the zoo's networks.
AUTO_CPU = "onnx-int8"
SUFFIX = {"onnx": ".onnx", "onnx-int8": "_int8.onnx"}
CALIBRATION_SIZE = 256  # px, long side of the int8 calibration photos


@dataclass
class Opened:
    """What `open_network` chose: the network (PyTorch or an OnnxNetwork), its export's info,
    the runtime it runs on, and a note for the user when runtime=auto fell back to PyTorch."""

    net: object
    info: object
    runtime: str
    note: str = ""


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime={runtime}: choose one of {', '.join(RUNTIMES)}")
    return runtime


def sibling_graph(src: Path, runtime: str) -> Path:
    """Where export writes the `runtime` graph of the export `src`: beside it."""
    return src.with_name(src.stem + SUFFIX[runtime])


def cached_graph(name: str, sha: str, runtime: str) -> Path:
    from fast_nst.weights.wheels import weights_cache_dir

    return weights_cache_dir() / "onnx" / f"{name}-{sha[:16]}{SUFFIX[runtime]}"


def source_sha(path: Path | None, net) -> str:
    """What a graph is made from: the sha256 of the export file, or for a kind's pretrained
    weights (no file) of its kind, config and tensors."""
    import hashlib
    import json

    from fast_nst.io.files import file_sha256

    if path is not None:
        return file_sha256(path)
    h = hashlib.sha256(json.dumps([net.kind, net.config], sort_keys=True, default=str).encode())
    for k, v in sorted(net.export_tensors().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu", copy=True).float().contiguous().numpy().tobytes())
    return h.hexdigest()


def graph_source_sha(graph: Path) -> str | None:
    from fast_nst.stylize.onnx import SOURCE_SHA_KEY, read_onnx_metadata

    try:
        return read_onnx_metadata(graph).get(SOURCE_SHA_KEY)
    except ValueError:
        return None


def find_graph(path: Path | None, name: str, runtime: str, sha: str) -> Path | None:
    """The `runtime` graph made from exactly this network (`sha`): beside its export `path`, or cached."""
    if path is not None:
        side = sibling_graph(path, runtime)
        if side.is_file():
            if graph_source_sha(side) == sha:
                return side
            log.warning("%s was not made from %s as it is now (an older export?); not used. "
                        "Rewrite it with: python -m fast_nst export ckpt=%s", side, path, path)
    cached = cached_graph(name, sha, runtime)
    return cached if cached.is_file() else None


def calibration_photos(folder: str | Path | None = None, count: int = 8) -> list:
    """(1, 3, H, W) tensors, long side CALIBRATION_SIZE: the first `count` photos of `folder`
    (default: the bundled assets/photos, which ship with the package)."""
    from fast_nst.io.images import list_images, load_rgb, pil_to_tensor
    from fast_nst.io.paths import PROJECT_ROOT

    folder = Path(folder) if folder else PROJECT_ROOT / "assets" / "photos"
    files = list_images(folder)[:count] if folder.is_dir() else []
    if not files:
        raise ConfigError(f"calibration={folder}: no photos to calibrate the int8 graph on")
    return [pil_to_tensor(load_rgb(f, CALIBRATION_SIZE)).unsqueeze(0) for f in files]


def write_graphs(src: Path | None, net, info, runtimes: Sequence[str] = GRAPHS, *, out: dict[str, Path] | None = None,
                 calibration: str | Path | None = None, calibration_count: int = 8,
                 say: Callable[[str], None] = log.info) -> dict[str, Path]:
    """Write the ONNX graphs (`runtimes`, among GRAPHS) of the network `net` (`info`: its export's
    metadata) loaded from the export `src`: beside it, or at `out[runtime]`; a kind's pretrained
    network (`src` None) into the cache. The int8 graph is quantized from the fp32 one (written
    first, to a temporary file when only int8 is asked for). Returns {runtime: path}."""
    import tempfile

    from fast_nst.stylize.onnx import (SOURCE_SHA_KEY, calibration_feeds, export_metadata_strings, export_onnx,
                                      quantize_int8)

    unknown = [r for r in runtimes if r not in GRAPHS]
    if unknown:
        raise ConfigError(f"ONNX graphs are {', '.join(GRAPHS)}; got {unknown}")
    name = src.stem if src is not None else net.kind
    if not net.graph_export:
        raise ConfigError(f"{name}: {net.kind} networks are not exported to ONNX; they run with runtime=torch")
    sha = source_sha(src, net)
    out = dict(out or {})
    dst = {r: Path(out.get(r) or (sibling_graph(src, r) if src is not None else cached_graph(name, sha, r)))
           for r in runtimes}
    meta = {**export_metadata_strings(info), SOURCE_SHA_KEY: sha}
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="fast_nst_onnx_") as tmp:
        fp32 = dst.get("onnx") or Path(tmp) / "fp32.onnx"
        say(f"writing the ONNX graph of {name} (about half a minute on an idle CPU)")
        export_onnx(net, fp32, metadata=meta)
        if "onnx" in dst:
            written["onnx"] = fp32
        if "onnx-int8" in dst:
            photos = calibration_photos(calibration, calibration_count)
            say(f"quantizing it to int8 (calibrated on {len(photos)} photos)")
            written["onnx-int8"] = quantize_int8(fp32, dst["onnx-int8"], calibration_feeds(net, photos))
    return written


def open_network(path: Path | None, runtime: str | None, *, device: str = "auto", wants_torch: str = "",
                 pretrained=None, session: dict | None = None) -> Opened:
    """The network of the export at `path` (a `.safetensors` or a `.onnx` graph; or `pretrained`,
    (net, info) of a kind's own weights, when there is no file) on `runtime` (None: the file as
    it is). `wants_torch`: why the caller needs PyTorch (e.g. "tile="), which makes runtime=auto
    choose it. `session`: ONNX Runtime session options (fast_nst.stylize.onnx.OnnxStylizer's
    threads, spinning, optimization)."""
    session = dict(session or {})
    from fast_nst.kinds import load_network
    from fast_nst.stylize.onnx import OnnxNetwork

    is_graph = path is not None and path.suffix.lower() == ".onnx"
    runtime = check_runtime(runtime) if runtime is not None else ("onnx" if is_graph else "torch")
    if is_graph:
        if runtime == "torch":
            raise ConfigError(f"ckpt={path} is an ONNX graph; runtime=torch needs the .safetensors export")
        net = OnnxNetwork(path, _source_network(path), **session)
        return Opened(net, net.info, "onnx-int8" if net.runner.int8 else "onnx")
    net, info = pretrained if path is None else load_network(path)
    if runtime == "torch":
        return Opened(net, info, "torch")
    name = path.stem if path is not None else net.kind
    on_cpu = device == "cpu" or (device == "auto" and not _cuda())
    if runtime == "auto":
        why = wants_torch or ("" if on_cpu else f"device={device}") or ("" if net.graph_export else "no graph")
        graph = None if why else find_graph(path, name, AUTO_CPU, source_sha(path, net))
        if graph is not None:
            return Opened(OnnxNetwork(graph, net, **session), info, AUTO_CPU)
        note = "" if why else (f"runtime=auto ran PyTorch: {name} has no {AUTO_CPU} graph yet; "
                               f"`python -m fast_nst export ckpt={path or name}` writes it (faster on a CPU; "
                               "docs/export.md, Runtimes)")
        return Opened(net, info, "torch", note=note)
    # runtime=onnx / onnx-int8, asked for by name
    if not net.graph_export:
        raise ConfigError(f"runtime={runtime}: {net.kind} networks are not exported to ONNX; use runtime=torch")
    if wants_torch:
        raise ConfigError(f"runtime={runtime} cannot do {wants_torch}: that needs runtime=torch")
    if not on_cpu:
        raise ConfigError(f"runtime={runtime} runs on the CPU; device={device} needs runtime=torch")
    sha = source_sha(path, net)
    graph = find_graph(path, name, runtime, sha)
    if graph is None:
        target = cached_graph(name, sha, runtime)
        log.info("no %s graph of %s yet: building it once into %s", runtime, name, target.parent)
        graph = write_graphs(path, net, info, [runtime], out={runtime: target})[runtime]
    return Opened(OnnxNetwork(graph, net, **session), info, runtime)


def _source_network(graph: Path):
    """The PyTorch network a `.onnx` graph was made from, when it is beside the graph (needed by
    arbitrary-style kinds, whose conditioning runs their trained style encoder); else None."""
    from fast_nst.kinds import load_network
    from fast_nst.io.files import file_sha256

    sha = graph_source_sha(graph)
    stem = graph.stem[: -len("_int8")] if graph.stem.endswith("_int8") else graph.stem
    src = graph.with_name(f"{stem}.safetensors")
    if sha is None or not src.is_file() or file_sha256(src) != sha:
        return None
    return load_network(src)[0]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
