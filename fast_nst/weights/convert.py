"""Conversions shared by the weight specs: reading a wheel's member (a pickled state dict, safely;
an ONNX file's initializers) and folding an input convention into a network's first conv
(Caffe's BGR 0..255 minus the mean pixel, or a 1x1 pre-conv, into torchvision's normalised RGB)."""

from __future__ import annotations

import io

import numpy as np
import torch

# torchvision's ImageNet normalisation (RGB order): the input convention of every VGG weight here.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe VGG mean pixel, BGR order.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def fold_input_affine(weight: torch.Tensor, bias: torch.Tensor, a: torch.Tensor,
                      c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``u = a @ n + c`` (per pixel, ``a``: 3x3, ``c``: 3) into conv1_1.

    ``weight`` (O, 3, kh, kw) / ``bias`` (O,) act on ``u``; the result acts on ``n``:
    ``W'[o,:,y,x] = W[o,:,y,x] @ a`` and ``b' = b + sum_{y,x} W[o,:,y,x] @ c``.
    Exact for interior pixels; at zero-padded borders the padded ``n = 0`` stands for
    ``u = c`` (the ImageNet-mean colour) instead of ``u = 0`` -- with torchvision's
    normalisation that is within 0.5/255 of Caffe's mean pixel, i.e. practically the
    same padding as the Caffe original.
    """
    w64, b64 = weight.double(), bias.double()
    a64, c64 = a.double(), c.double()
    w_new = torch.einsum("oiyx,ij->ojyx", w64, a64)
    b_new = b64 + torch.einsum("oiyx,i->o", w64, c64)
    return w_new.float().contiguous(), b_new.float().contiguous()


def torchvision_to_unit_rgb() -> tuple[torch.Tensor, torch.Tensor]:
    """x_rgb01 = s * n + m, with n the torchvision-normalised input."""
    s = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    m = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    return torch.diag(s), m


def fold_caffe_bgr(weight: torch.Tensor, bias: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 expecting Caffe BGR 0..255 minus mean pixel -> torchvision input."""
    # u_bgr = P @ (255 * x_rgb) - mean_bgr, P = channel flip; x_rgb = S n + m
    p = torch.eye(3, dtype=torch.float64).flip(0)
    s, m = torchvision_to_unit_rgb()
    a = 255.0 * p @ s
    c = 255.0 * p @ m - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)
    return fold_input_affine(weight, bias, a, c)


def fold_preconv(weight: torch.Tensor, bias: torch.Tensor, pre_w: torch.Tensor,
                 pre_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 preceded by a 1x1 conv on RGB [0,1] -> torchvision input."""
    # u = A x + a0 (the 1x1 conv), x = S n + m  =>  u = (A S) n + (A m + a0)
    a_pre = pre_w.double().reshape(3, 3)
    s, m = torchvision_to_unit_rgb()
    return fold_input_affine(weight, bias, a_pre @ s, a_pre @ m + pre_b.double())


def load_pth(member_bytes: bytes, member: str) -> dict[str, torch.Tensor]:
    """A pickled state dict, read with ``weights_only=True`` (tensors only, no code runs)."""
    sd = torch.load(io.BytesIO(member_bytes), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise RuntimeError(f"{member} holds a {type(sd).__name__}, expected a state dict")
    return sd


def onnx_initializers(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    """{name: array} of every initializer (constant tensor) of an ONNX file; nothing is run."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise RuntimeError("the 'onnx' package is needed to read weights out of an ONNX file: pip install onnx") from e
    graph = onnx.load_from_string(onnx_bytes).graph
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}
