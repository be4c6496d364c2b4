"""Single-pass inference with an exported per-style network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from fast_nst.color import finish
from fast_nst.export import load_network
from fast_nst.images import ImageError, limit_size, open_image, pil_to_tensor, tensor_to_pil, to_rgb

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device} but CUDA is not available here; use device=cpu or auto")
    return torch.device(device)


def find_checkpoint(ckpt: str | os.PathLike, search: list[Path] | None = None) -> Path:
    """A path, or a bare style name looked up as `<name>.safetensors` in ./checkpoints and the
    project's checkpoints/."""
    p = Path(ckpt).expanduser()
    if p.is_file():
        return p
    dirs = search or [Path("checkpoints"), CHECKPOINT_DIR]
    for d in dirs:
        for cand in (d / str(ckpt), d / f"{ckpt}.safetensors"):
            if cand.is_file():
                return cand
    avail = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.safetensors")})
    raise FileNotFoundError(f"ckpt={ckpt}: no such file and no '{ckpt}.safetensors' in "
                            f"{', '.join(str(d) for d in dirs)}. Available: {avail or 'none'}; "
                            "train one with: python train.py style=<name>")


class Stylizer:
    """`Stylizer.load("checkpoints/starry_night.safetensors")(pil_image)` -> stylized PIL image.

    The output has the input's size (after `max_size`, which caps the long side). Grayscale and
    palette images are stylized in colour; RGBA keeps its alpha channel; EXIF rotation is applied.

    Everything goes through `stylize_tensor` ((B, 3, H, W) in [0, 1] -> same shape), which images,
    video (fast_nst.video) and tiles share: `preserve_color` / `strength` (fast_nst.color) finish
    the network's output, `tile` > 0 runs images larger than that in tiles with whole-image
    instance-norm statistics (fast_nst.tiling). A `.onnx` checkpoint runs with ONNX Runtime on the
    CPU (fast_nst.onnx_export.OnnxStylizer).
    """

    def __init__(self, net: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor], metadata: dict | None = None,
                 device: str = "auto", half: bool = False, channels_last: bool = True, *,
                 preserve_color: bool = False, strength: float = 1.0, tile: int | None = None,
                 tile_overlap: int = 64, tile_stats: str = "thumbnail", tile_stats_size: int = 2048):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1] (0 = the photo, 1 = full style), got {strength}")
        self.metadata = metadata or {}
        self.preserve_color, self.strength = bool(preserve_color), float(strength)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if isinstance(net, torch.nn.Module):
            self.device = pick_device(device)
            self.half = half and self.device.type == "cuda"
            self.net = net.to(self.device, memory_format=self.memory_format).eval()
            if self.half:
                self.net = self.net.half()
        else:  # a tensor-in, tensor-out runtime such as OnnxStylizer (CPU)
            if device not in ("auto", "cpu"):
                raise ValueError(f"device={device}: this checkpoint runs with ONNX Runtime on the CPU; "
                                 "use device=auto or cpu, or the .safetensors checkpoint for CUDA")
            self.device, self.half, self.net = torch.device("cpu"), False, net
        self.tile = int(tile) if tile else None
        if self.tile:
            from fast_nst.tiling import STATS_MODES, tile_spans

            if not isinstance(net, torch.nn.Module):
                raise ValueError("tile= needs a PyTorch checkpoint (.safetensors): tiles take whole-image "
                                 "instance-norm statistics from the network's norm layers, which an ONNX "
                                 "graph does not expose")
            if tile_stats not in STATS_MODES:
                raise ValueError(f"tile_stats must be one of {', '.join(STATS_MODES)}, got {tile_stats!r}")
            tile_spans(4 * self.tile, self.tile, tile_overlap)  # raises on a bad tile / overlap pair now
        self.tile_overlap, self.tile_stats, self.tile_stats_size = tile_overlap, tile_stats, tile_stats_size

    @classmethod
    def load(cls, ckpt: str | os.PathLike, device: str = "auto", **kwargs) -> "Stylizer":
        path = find_checkpoint(ckpt)
        if path.suffix.lower() == ".onnx":
            from fast_nst.onnx_export import OnnxStylizer

            onnx = OnnxStylizer(path)
            kwargs.pop("half", None)
            kwargs.pop("channels_last", None)
            return cls(onnx, onnx.metadata, device=device, **kwargs)
        net, meta = load_network(path)
        return cls(net, meta, device=device, **kwargs)

    @property
    def style_name(self) -> str:
        return self.metadata.get("style", {}).get("name", "unknown")

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> same shape in [0, 1], float32 on CPU."""
        if self.strength == 0.0:
            return x.detach().float().cpu().clone()  # the photo itself: skip the network
        if self.tile and max(x.shape[-2:]) > self.tile:
            from fast_nst.tiling import stylize_tiled

            y = stylize_tiled(self.net, x, tile=self.tile, overlap=self.tile_overlap, stats=self.tile_stats,
                              stats_size=self.tile_stats_size)
        elif isinstance(self.net, torch.nn.Module):
            y = self.net(x.to(self.device, torch.float16 if self.half else torch.float32,
                              memory_format=self.memory_format, non_blocking=True)).float().clamp_(0, 1).cpu()
        else:
            y = self.net(x)
        if self.preserve_color or self.strength < 1.0:
            y = finish(y, x.detach().float().cpu(), preserve_color=self.preserve_color, strength=self.strength)
        return y.clamp_(0, 1)

    def stylize_batch(self, images: list[Image.Image]) -> list[Image.Image]:
        """Images of one size go through the network as one batch."""
        rgb = [to_rgb(im) for im in images]
        sizes = {im.size for im in rgb}
        if len(sizes) != 1:
            return [self(im) for im in images]
        out = self.stylize_tensor(torch.stack([pil_to_tensor(im) for im in rgb]))
        return [self._restore_alpha(src, tensor_to_pil(o)) for src, o in zip(images, out)]

    @staticmethod
    def _restore_alpha(src: Image.Image, out: Image.Image) -> Image.Image:
        if src.mode in ("RGBA", "LA") or (src.mode == "P" and "transparency" in src.info):
            out = out.convert("RGBA")
            out.putalpha(src.convert("RGBA").getchannel("A"))
        return out

    def __call__(self, image: Image.Image | str | os.PathLike, max_size: int | None = None) -> Image.Image:
        if not isinstance(image, Image.Image):
            image = open_image(image)
        if image.width < 1 or image.height < 1:
            raise ImageError("empty image")
        image = limit_size(image, max_size)
        return self.stylize_batch([image])[0]
