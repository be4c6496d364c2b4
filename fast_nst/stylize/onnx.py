"""ONNX export of a stylization network, and ONNX Runtime behind the same network interface as
the PyTorch kinds (`OnnxNetwork`, see fast_nst.kinds.base.InferenceNetwork).

The graph is the kind's `graph_forward(x, *inputs)`: the image, (B, 3, H, W) float in [0, 1],
plus the kind's conditioning inputs (`graph_inputs()`: e.g. a multi-style network's mixing
weights, a style-prediction network's embedding), each (B, width) float. What produces those
inputs (`condition`, `graph_feed`: painting names, painting images through a style encoder) stays
in PyTorch, in the kind's own network.

The exported graph takes any height and width. `TransformerNet.forward` pads each side to a
multiple of 4 (at least 8) and crops afterwards; done with Python integers, that logic would be
frozen to the example's size by any tracer. So the network body is exported for sides that are
multiples of 4 (torch.export's derived dimension `4 * k`, under which the padding provably
vanishes), and the padding and the crop are written as ONNX operators around it, with the same
rule as PyTorch: reflect padding, or edge padding when an image side is too small to reflect.
Instance-norm layers are written as ONNX InstanceNormalization (`models.norms.graph_form`).
The file is therefore self-contained: any ONNX consumer can feed it any size.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from fast_nst.io.files import atomic_write
from fast_nst.kinds.base import Capabilities, StyleChoiceError, StyleNetwork, check_strength

if TYPE_CHECKING:
    from fast_nst.io.export import ExportInfo

ONNX_FORMAT = "fast_nst.onnx.v1"
INPUT, OUTPUT = "image", "stylized"
INPUTS_KEY = "fast_nst.onnx.inputs"        # JSON {name: width} of the conditioning inputs
SOURCE_SHA_KEY = "fast_nst.onnx.source_sha256"  # the .safetensors the graph was made from
OPSET = 20
# Optimisation levels by name (ONNX Runtime's GraphOptimizationLevel); measured best on our CPU
# in benchmarks/bench.py: see docs/performance.md.
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")


def export_onnx(net: nn.Module, path: str | os.PathLike, *, metadata: dict[str, str] | None = None,
                multiple: int = 4, min_side: int = 8, opset: int = OPSET) -> Path:
    """Write `net` as an ONNX file with dynamic batch, height and width: a `StyleNetwork` as its
    `graph_forward` with its `graph_inputs`, or any module mapping (B, 3, H, W) -> (B, 3, H, W)
    for sides that are multiples of `multiple` and >= `min_side`.

    `metadata` (string keys and values, e.g. an export's `fast_nst.*` fields) is stored in the
    model's metadata_props, with the conditioning inputs under INPUTS_KEY. Written atomically.
    """
    import onnx

    body = _GraphBody(net)
    core = _export_body(body, multiple, min_side, opset)
    model = _wrap_pad_and_crop(core, multiple, min_side, body.widths)
    props = {"format": ONNX_FORMAT, "fast_nst.onnx.padding":
             f"inside the graph: reflect (edge when a side is too small) to a multiple of {multiple}, "
             f"at least {min_side}; cropped back", INPUTS_KEY: json.dumps(body.widths)}
    props.update({k: str(v) for k, v in (metadata or {}).items() if k != "format"})
    if metadata and "format" in metadata:
        props["fast_nst.source_format"] = str(metadata["format"])
    _set_metadata(model, props)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _set_metadata(model, props: dict[str, str]) -> None:
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


class _GraphBody(nn.Module):
    """What is traced: a StyleNetwork's `graph_forward` (its instance norms in their graph form),
    or a plain module's forward. `widths`: the conditioning inputs, {name: width}."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(net).float().cpu().eval().to(memory_format=torch.contiguous_format)
        self.kind_graph = isinstance(net, StyleNetwork)
        if self.kind_graph and not net.graph_export:
            raise ValueError(f"{net.kind} networks are not exported to ONNX (graph_export = False); "
                             "they run in PyTorch (runtime=torch)")
        self.widths = {k: int(v) for k, v in (net.graph_inputs() if self.kind_graph else {}).items()}
        self.eval()

    def forward(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        return self.net.graph_forward(x, *inputs) if self.kind_graph else self.net(x)


def _export_body(body: _GraphBody, multiple: int, min_side: int, opset: int):
    """The network for inputs whose sides are multiples of `multiple`: its own pad-and-crop is a
    no-op there, so torch.export needs no guard on the size."""
    from torch.export import Dim

    from fast_nst.models.norms import graph_form

    k_min = max(1, -(-min_side // multiple))
    hk, wk = Dim("hk", min=k_min, max=1 << 16), Dim("wk", min=k_min, max=1 << 16)
    batch = Dim("batch", min=1, max=1 << 12)
    side = multiple * max(k_min, 4)
    example = torch.rand(2, 3, side, side + multiple)  # batch 2 and unequal sides: nothing specialises
    extras = tuple(torch.rand(2, w) for w in body.widths.values())
    shapes = ({0: batch, 2: multiple * hk, 3: multiple * wk},)
    if extras:  # forward(x, *inputs): torch.export sees (x, (inputs...))
        shapes += (tuple({0: batch} for _ in extras),)
    # The exporter prints its progress steps to stdout and logs each optimisation pass; keep a
    # CLI's output to its own lines.
    with torch.no_grad(), graph_form(body), contextlib.redirect_stdout(io.StringIO()), _quiet_exporter():
        program = torch.onnx.export(body, (example, *extras), None, dynamo=True, opset_version=opset,
                                    input_names=[INPUT, *body.widths], output_names=[OUTPUT],
                                    external_data=False, dynamic_shapes=shapes, verbose=False)
    return program.model_proto


@contextlib.contextmanager
def _quiet_exporter():
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # "The axis name: batch will not be used, since it shares the same shape constraints
            # with another axis": the conditioning inputs share the image's batch, as intended
            warnings.filterwarnings("ignore", message="The axis name", category=UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _wrap_pad_and_crop(core, multiple: int, min_side: int, widths: dict[str, int]):
    """`core` takes sides that are multiples of `multiple`; return a model that takes any size:
    pad -> core -> crop, mirroring TransformerNet.forward's rule. The conditioning inputs
    (`widths`) go to the body as they are."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = core.graph
    body_in, body_out = g.input[0].name, g.output[0].name
    padded, raw = "fast_nst_padded", "fast_nst_body_output"
    for node in g.node:  # rename the body's input and output so ours can take their names
        node.input[:] = [padded if n == body_in else n for n in node.input]
        node.output[:] = [raw if n == body_out else n for n in node.output]
    del g.value_info[:]  # symbolic '4*hk' shapes of the body; ONNX Runtime re-infers them

    def const(name: str, values) -> None:
        g.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))

    const("fast_nst_m_minus_1", [multiple - 1])
    const("fast_nst_m", [multiple])
    const("fast_nst_min_side", [min_side])
    const("fast_nst_zero_pads", [0] * 6)       # begin N, C, H, W and end N, C
    const("fast_nst_hw_axes", [2, 3])
    const("fast_nst_hw_starts", [0, 0])
    mk = helper.make_node
    pre = [
        mk("Shape", [INPUT], ["fast_nst_hw"], start=2, end=4),
        # target = max(min_side, ceil(hw / m) * m); pad = target - hw
        mk("Add", ["fast_nst_hw", "fast_nst_m_minus_1"], ["fast_nst_up"]),
        mk("Div", ["fast_nst_up", "fast_nst_m"], ["fast_nst_blocks"]),
        mk("Mul", ["fast_nst_blocks", "fast_nst_m"], ["fast_nst_ceil"]),
        mk("Max", ["fast_nst_ceil", "fast_nst_min_side"], ["fast_nst_target"]),
        mk("Sub", ["fast_nst_target", "fast_nst_hw"], ["fast_nst_pad"]),
        # reflect only when both pads are smaller than their sides (as F.pad requires), else edge
        mk("Less", ["fast_nst_pad", "fast_nst_hw"], ["fast_nst_fits"]),
        mk("Cast", ["fast_nst_fits"], ["fast_nst_fits_i"], to=TensorProto.INT64),
        mk("ReduceMin", ["fast_nst_fits_i"], ["fast_nst_reflect"], keepdims=1),
        mk("Mul", ["fast_nst_pad", "fast_nst_reflect"], ["fast_nst_pad_reflect"]),
        mk("Sub", ["fast_nst_pad", "fast_nst_pad_reflect"], ["fast_nst_pad_edge"]),
        mk("Concat", ["fast_nst_zero_pads", "fast_nst_pad_edge"], ["fast_nst_pads_edge"], axis=0),
        mk("Concat", ["fast_nst_zero_pads", "fast_nst_pad_reflect"], ["fast_nst_pads_reflect"], axis=0),
        # one of the two pads is all zeros, which is the identity
        mk("Pad", [INPUT, "fast_nst_pads_edge"], ["fast_nst_edge_padded"], mode="edge"),
        mk("Pad", ["fast_nst_edge_padded", "fast_nst_pads_reflect"], [padded], mode="reflect"),
    ]
    post = [mk("Slice", [raw, "fast_nst_hw_starts", "fast_nst_hw", "fast_nst_hw_axes"], [OUTPUT])]
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:], g.output[:]
    g.input.append(helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, "height", "width"]))
    g.input.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", w]) for name, w in widths.items())
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 3, "height", "width"]))
    return onnx.shape_inference.infer_shapes(core)


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike,
                  calibration: Sequence[torch.Tensor | Mapping[str, Any]], *, reduce_range: bool = True,
                  float_ends: bool = True) -> Path:
    """Static int8 quantization of the convolutions of a fast_nst ONNX file (ONNX Runtime's
    `quantize_static`): weights per output channel, activations uint8 with ranges from running the
    `calibration` batches: (1, 3, H, W) photos in [0, 1], or feeds {input name: tensor} for a
    graph with conditioning inputs (`calibration_feeds`); a handful at 256 px is enough.

    The recipe, measured in benchmarks/bench_runtimes.py (docs/export.md, Runtimes):
    - QOperator format (QLinearConv): faster than QDQ on our CPUs;
    - `reduce_range` (7-bit weights): the u8 x s8 products of CPUs without AVX-512 VNNI (AVX2,
      plain AVX-512) add pairs in 16 bits and saturate with 8-bit weights; with 7 bits they
      cannot, so the graph gives the same picture on every x86 CPU (costs ~0.1 dB on VNNI);
    - `float_ends`: the first convolution (reading RGB) and the last (writing it) stay float:
      they cost most of the quality (about 3 dB) and, with 3 channels, gain nothing from int8.
    Instance norm, padding and tanh stay float. Metadata is kept, with a note of the recipe.
    Written atomically."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("int8 quantization needs at least one calibration photo")
    src = Path(src)
    model = onnx.load(str(src), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    exclude = [convs[0], convs[-1]] if float_ends and len(convs) > 2 else []

    def feed(item) -> dict[str, np.ndarray]:
        items = item.items() if isinstance(item, Mapping) else [(INPUT, item)]
        return {k: np.ascontiguousarray(torch.as_tensor(v).to(torch.float32).numpy()) for k, v in items}

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else feed(x)

    def write(tmp: Path) -> None:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to run shape pre-processing: measured no gain here
        try:
            quantize_static(str(src), str(tmp), Photos(), quant_format=QuantFormat.QOperator, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "ConvTranspose"],
                            nodes_to_exclude=exclude)
        finally:
            root.setLevel(level)
        model = onnx.load(str(tmp))
        props["fast_nst.onnx.quantized"] = (
            f"int8 (QLinearConv, per-channel {'7' if reduce_range else '8'}-bit weights"
            f"{', first and last convolution float' if exclude else ''}, calibrated on {len(calibration)} photos)")
        _set_metadata(model, props)
        onnx.save(model, str(tmp))

    return atomic_write(dst, write)


def calibration_feeds(net: StyleNetwork, photos: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Feeds for `quantize_int8` that exercise `net` over its styles (`example_styles`: each of
    its paintings, or the bundled ones for an arbitrary-style kind): photo i with style i, cycling
    through the shorter list, so every photo and every style is seen."""
    styles = net.example_styles()
    conds = [net.condition(**s) for s in styles]
    out = []
    with torch.inference_mode():
        for i in range(max(len(photos), len(styles))):
            x = photos[i % len(photos)].float().cpu()
            out.append({INPUT: x, **net.graph_feed(x, conds[i % len(conds)], 1.0)})
    return out


def export_metadata_strings(info: "ExportInfo") -> dict[str, str]:
    """The string metadata of a `.safetensors` export (`format` and `fast_nst.*`, in the current
    export format whatever the file's; see `fast_nst.io.export.ExportInfo.metadata`) to store in the
    ONNX file, so `read_onnx_info` gives the same ExportInfo back."""
    return info.metadata()


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """metadata_props of a fast_nst ONNX file, with the JSON fields of the source export parsed
    (`network`, `styles`, `loss`, `loss_net`, `model_card`, `thumbnails`)."""
    import onnx

    from fast_nst.io.errors import ConfigError, one_line

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ConfigError(f"{path}: not a readable ONNX file ({one_line(e)}); re-export it with "
                          "tools/export_onnx.py") from e
    raw = {p.key: p.value for p in model.metadata_props}
    if raw.get("format") != ONNX_FORMAT:
        raise ConfigError(f"{path}: not a fast_nst ONNX export (format={raw.get('format')!r}, expected "
                          f"{ONNX_FORMAT!r}); make one with: python tools/export_onnx.py ckpt=<export>")
    out: dict[str, Any] = dict(raw)
    for k in ("network", "styles", "loss", "loss_net", "model_card", "thumbnails"):
        try:
            out[k] = json.loads(raw.get(f"fast_nst.{k}", "{}" if k != "styles" else "[]"))
        except ValueError as e:
            raise ConfigError(f"{path}: broken fast_nst.{k} metadata ({one_line(e)}); re-export it with "
                              "tools/export_onnx.py") from e
    return out


def read_onnx_info(path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> "ExportInfo | None":
    """The ExportInfo of the export an ONNX file was made from (its paintings, network, model
    card), or None for a graph exported without an export's metadata."""
    from fast_nst.io.export import info_from_metadata

    raw = metadata if metadata is not None else read_onnx_metadata(path)
    if "fast_nst.source_format" not in raw:
        return None
    strings = {k: v for k, v in raw.items() if isinstance(v, str) and k.startswith("fast_nst.")}
    return info_from_metadata({**strings, "format": raw["fast_nst.source_format"]}, Path(path))


class OnnxStylizer:
    """Runs a fast_nst ONNX file with ONNX Runtime: `OnnxStylizer(path)(x, **inputs)` with x a
    (B, 3, H, W) float tensor in [0, 1] (and the graph's conditioning inputs, if it has any) gives
    the stylized batch, float32 on CPU. `OnnxNetwork` puts it behind the network interface.

    `threads`: intra-op threads (None: ONNX Runtime's default, one per core). `optimization`: one
    of OPTIMIZATION_LEVELS. `spinning=False` stops idle worker threads from busy-waiting, which
    helps when other processes share the cores."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, optimization: str = "extended",
                 spinning: bool = True, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.metadata = read_onnx_metadata(self.path)
        self.info = read_onnx_info(self.path, self.metadata)
        self.inputs: dict[str, int] = json.loads(self.metadata.get(INPUTS_KEY, "{}"))
        levels = dict(zip(OPTIMIZATION_LEVELS, (
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL)))
        if optimization not in levels:
            raise ValueError(f"optimization must be one of {OPTIMIZATION_LEVELS}, got {optimization!r}")
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[optimization]
        if threads:
            so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        if not spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), so,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime refuses a damaged or edited graph at load
            from fast_nst.io.errors import ConfigError, one_line

            raise ConfigError(f"{self.path}: ONNX Runtime cannot load this graph ({one_line(e)}); re-export it "
                              "with tools/export_onnx.py, or use the .safetensors it came from") from e
        self.input_name = self.session.get_inputs()[0].name

    @property
    def int8(self) -> bool:
        return "fast_nst.onnx.quantized" in self.metadata

    @property
    def style_name(self) -> str:
        return self.info.styles[0].name if self.info is not None and self.info.styles else "unknown"

    def __call__(self, x: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) RGB batch, got {tuple(x.shape)}")
        if set(inputs) != set(self.inputs):
            raise ValueError(f"{self.path.name} takes the inputs {sorted(self.inputs) or 'none'} besides the image, "
                             f"got {sorted(inputs) or 'none'}")
        feeds = {self.input_name: np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())}
        feeds.update({k: np.ascontiguousarray(v.detach().to("cpu", torch.float32).numpy()) for k, v in inputs.items()})
        (y,) = self.session.run(None, feeds)
        return torch.from_numpy(y).clamp_(0, 1)


class OnnxNetwork:
    """An ONNX graph behind the network interface of the PyTorch kinds (`InferenceNetwork`), so
    `Stylizer` runs it like any network: CPU only, float32 or int8, no tiles (its capabilities).

    `conditioner`: the kind's PyTorch network, which turns style arguments into the graph's
    conditioning inputs (`condition`, `graph_feed`); only its non-graph parts run. For kinds that
    learned their paintings it is rebuilt from the graph's metadata (choosing a painting needs no
    weights); an arbitrary-style kind needs its trained network (the .safetensors).
    """

    own_preserve_color = False  # kinds with their own colour control do not export (AdaIN)

    def __init__(self, path: str | os.PathLike, conditioner: StyleNetwork | None = None, **session):
        self.runner = OnnxStylizer(path, **session)
        self.path, self.info = self.runner.path, self.runner.info
        if conditioner is None and self.info is not None:
            from fast_nst.kinds import get_kind

            cls = get_kind(self.info.kind)
            if cls.arbitrary_style:
                raise ValueError(f"{self.path}: a {self.info.kind} graph gets its conditioning from the trained "
                                 "network (its style encoder): load it with ckpt=<the .safetensors> runtime=onnx")
            # only its condition() / graph_feed() run, which read no weights: built untrained
            conditioner = cls(list(self.info.styles), **self.info.network).eval()
        self.conditioner = conditioner
        kind = type(conditioner) if conditioner is not None else StyleNetwork
        self.kind = conditioner.kind if conditioner is not None else "onnx"
        self.arbitrary_style, self.strength_blends = kind.arbitrary_style, kind.strength_blends
        self.capabilities = Capabilities(f"ONNX Runtime {'int8' if self.runner.int8 else 'fp32'}", devices=("cpu",),
                                         half=False, channels_last=False, tiles=False)

    @property
    def style_names(self) -> list[str]:
        if self.info is not None:
            return self.info.style_names
        return [self.path.stem]

    def prepare(self, device: torch.device, half: bool, channels_last: bool) -> "OnnxNetwork":
        return self

    def condition(self, style: str | None = None, style_weights: Any = None, style_image: Any = None, **kw) -> Any:
        if self.conditioner is None:  # a bare graph: one painting, nothing to choose
            if style not in (None, *self.style_names) or style_weights is not None or style_image is not None:
                raise StyleChoiceError(f"this ONNX graph holds one painting ({self.style_names[0]}); "
                                       "style=, style_weights= and style_image= do not apply")
            return None
        return self.conditioner.condition(style=style, style_weights=style_weights, style_image=style_image, **kw)

    def stylize(self, x: torch.Tensor, cond: Any = None, strength: float = 1.0) -> torch.Tensor:
        check_strength(strength)
        x = x.detach().to("cpu", torch.float32)
        feeds = self.conditioner.graph_feed(x, cond, strength) if self.conditioner is not None else {}
        y = self.runner(x, **feeds)
        return y if strength == 1.0 or not self.strength_blends else torch.lerp(x, y, strength)
