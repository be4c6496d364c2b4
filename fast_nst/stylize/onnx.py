"""ONNX export of a stylization network and an ONNX Runtime runner with the Stylizer's tensor
signature: (B, 3, H, W) float in [0, 1] -> the same shape in [0, 1].

The exported graph takes any height and width. `TransformerNet.forward` pads each side to a
multiple of 4 (at least 8) and crops afterwards; done with Python integers, that logic would be
frozen to the example's size by any tracer. So the network body is exported for sides that are
multiples of 4 (torch.export's derived dimension `4 * k`, under which the padding provably
vanishes), and the padding and the crop are written as ONNX operators around it, with the same
rule as PyTorch: reflect padding, or edge padding when an image side is too small to reflect.
The file is therefore self-contained: any ONNX consumer can feed it any size.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fast_nst.io.files import atomic_write

if TYPE_CHECKING:
    from fast_nst.io.export import ExportInfo

ONNX_FORMAT = "fast_nst.onnx.v1"
INPUT, OUTPUT = "image", "stylized"
OPSET = 20
# Optimisation levels by name (ONNX Runtime's GraphOptimizationLevel); measured best on our CPU
# in benchmarks/bench.py: see the README's Performance section.
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")


def export_onnx(net: nn.Module, path: str | os.PathLike, *, metadata: dict[str, str] | None = None,
                multiple: int = 4, min_side: int = 8, opset: int = OPSET) -> Path:
    """Write `net` (any module mapping (B, 3, H, W) -> (B, 3, H, W) for sides that are multiples of
    `multiple` and >= `min_side`) as an ONNX file with dynamic batch, height and width.

    `metadata` (string keys and values, e.g. an export's `fast_nst.*` fields) is stored in the
    model's metadata_props. Written atomically.
    """
    import onnx

    core = _export_body(net, multiple, min_side, opset)
    model = _wrap_pad_and_crop(core, multiple, min_side)
    props = {"format": ONNX_FORMAT, "fast_nst.onnx.padding":
             f"inside the graph: reflect (edge when a side is too small) to a multiple of {multiple}, "
             f"at least {min_side}; cropped back"}
    props.update({k: str(v) for k, v in (metadata or {}).items() if k != "format"})
    if metadata and "format" in metadata:
        props["fast_nst.source_format"] = str(metadata["format"])
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _export_body(net: nn.Module, multiple: int, min_side: int, opset: int):
    """The network for inputs whose sides are multiples of `multiple`: its own pad-and-crop is a
    no-op there, so torch.export needs no guard on the size."""
    from torch.export import Dim

    body = copy.deepcopy(net).float().cpu().eval()
    body = body.to(memory_format=torch.contiguous_format)
    k_min = max(1, -(-min_side // multiple))
    hk, wk = Dim("hk", min=k_min, max=1 << 16), Dim("wk", min=k_min, max=1 << 16)
    batch = Dim("batch", min=1, max=1 << 12)
    side = multiple * max(k_min, 4)
    example = torch.rand(2, 3, side, side + multiple)  # batch 2 and unequal sides: nothing specialises
    # The exporter prints its progress steps to stdout; keep a CLI's output to its own lines.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(body, (example,), None, dynamo=True, opset_version=opset,
                                    input_names=[INPUT], output_names=[OUTPUT], external_data=False,
                                    dynamic_shapes=({0: batch, 2: multiple * hk, 3: multiple * wk},),
                                    verbose=False)
    return program.model_proto


def _wrap_pad_and_crop(core, multiple: int, min_side: int):
    """`core` takes sides that are multiples of `multiple`; return a model that takes any size:
    pad -> core -> crop, mirroring TransformerNet.forward's rule."""
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
    g.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 3, "height", "width"]))
    return onnx.shape_inference.infer_shapes(core)


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calibration: list[torch.Tensor], *,
                  reduce_range: bool = False) -> Path:
    """Static int8 quantization of the convolutions of a fast_nst ONNX file (ONNX Runtime's
    `quantize_static`): weights per output channel, activations uint8 with ranges from running the
    `calibration` batches ((1, 3, H, W) photos in [0, 1]; a handful at 256 px is enough).

    QOperator format (QLinearConv), which measured 1.6x faster than the QDQ format on our
    AVX-512-VNNI CPU. Instance norm, padding and tanh stay float. `reduce_range=True` (7-bit
    weights) is ONNX Runtime's advice for CPUs without VNNI, whose int8 kernels can saturate.
    Metadata is kept, with a note of the quantization. Written atomically."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("int8 quantization needs at least one calibration photo")
    src = Path(src)
    props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {INPUT: np.ascontiguousarray(x.to(torch.float32).numpy())}

    def write(tmp: Path) -> None:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to run shape pre-processing: measured no gain here
        try:
            quantize_static(str(src), str(tmp), Photos(), quant_format=QuantFormat.QOperator, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "ConvTranspose"])
        finally:
            root.setLevel(level)
        model = onnx.load(str(tmp))
        del model.metadata_props[:]
        props["fast_nst.onnx.quantized"] = (f"int8 (QLinearConv, per-channel weights{', 7-bit' if reduce_range else ''}, "
                                            f"calibrated on {len(calibration)} photos)")
        for k, v in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(model, str(tmp))

    return atomic_write(dst, write)


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
    """Runs a fast_nst ONNX file with ONNX Runtime: `OnnxStylizer(path)(x)` with x a (B, 3, H, W)
    float tensor in [0, 1] gives the stylized batch, float32 on CPU, like `Stylizer.stylize_tensor`.

    `threads`: intra-op threads (None: ONNX Runtime's default, one per core). `optimization`: one
    of OPTIMIZATION_LEVELS. `spinning=False` stops idle worker threads from busy-waiting, which
    helps when other processes share the cores."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, optimization: str = "extended",
                 spinning: bool = True, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.metadata = read_onnx_metadata(self.path)
        self.info = read_onnx_info(self.path, self.metadata)
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
    def style_name(self) -> str:
        return self.info.styles[0].name if self.info is not None and self.info.styles else "unknown"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) RGB batch, got {tuple(x.shape)}")
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (y,) = self.session.run(None, {self.input_name: arr})
        return torch.from_numpy(y).clamp_(0, 1)
