"""Single-pass inference with an exported per-style network."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image

from fast_nst.errors import MissingPathError
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
    raise MissingPathError(f"ckpt={ckpt}: no such file and no '{ckpt}.safetensors' in "
                            f"{', '.join(str(d) for d in dirs)}. Available: {avail or 'none'}; "
                            "train one with: python train.py style=<name>")


class Stylizer:
    """`Stylizer.load("checkpoints/starry_night.safetensors")(pil_image)` -> stylized PIL image.

    The output has the input's size (after `max_size`, which caps the long side). Grayscale and
    palette images are stylized in colour; RGBA keeps its alpha channel; EXIF rotation is applied.
    """

    def __init__(self, net: torch.nn.Module, metadata: dict | None = None, device: str = "auto",
                 half: bool = False, channels_last: bool = True):
        self.device = pick_device(device)
        self.half = half and self.device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(self.device, memory_format=self.memory_format).eval()
        if self.half:
            self.net = self.net.half()
        self.metadata = metadata or {}

    @classmethod
    def load(cls, ckpt: str | os.PathLike, device: str = "auto", **kwargs) -> "Stylizer":
        net, meta = load_network(find_checkpoint(ckpt))
        return cls(net, meta, device=device, **kwargs)

    @property
    def style_name(self) -> str:
        return self.metadata.get("style", {}).get("name", "unknown")

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> same shape in [0, 1], float32 on CPU."""
        x = x.to(self.device, torch.float16 if self.half else torch.float32,
                 memory_format=self.memory_format, non_blocking=True)
        return self.net(x).float().clamp_(0, 1).cpu()

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
