"""Single-pass inference with an exported network of any kind.

    stylizer = Stylizer.load("checkpoints/multi_style.safetensors")
    stylizer(photo, style="the_scream")                                     # PIL in, PIL out
    stylizer(photo, style_weights={"starry_night": 0.7, "the_scream": 0.3})  # mix paintings
    stylizer(photo, strength=0.5)                                           # half-way to the photo
    stylizer.stylize_tensor(x, style="udnie")                               # (B,3,H,W) in [0,1]

Style arguments everywhere: `style` (one of the network's paintings, by name), `style_weights`
(a mix: {name: weight}, normalised to sum 1), `style_image` (painting file(s) or images, for
arbitrary-style kinds) and `strength` (0 = the photo, 1 = full style). What they mean for a kind
is the kind's `condition`/`stylize` (fast_nst/kinds/); the resolved conditioning is cached, so a
folder or a video pays for it once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from fast_nst.export import ExportInfo, load_network
from fast_nst.errors import MissingPathError
from fast_nst.images import ImageError, limit_size, open_image, pil_to_tensor, tensor_to_pil, to_rgb
from fast_nst.kinds.base import StyleNetwork, check_strength

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device} but CUDA is not available here; use device=cpu or auto")
    return torch.device(device)


def find_checkpoint(ckpt: str | os.PathLike, search: list[Path] | None = None) -> Path:
    """A path, or a bare name looked up as `<name>.safetensors` in ./checkpoints and the
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


_NO_CACHE = object()


def _freeze_key(v: Any) -> Any:
    """A hashable form of a style argument for the conditioning cache, or _NO_CACHE (images,
    tensors: computed at every call)."""
    if v is None or isinstance(v, (str, int, float)):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, Mapping):
        items = tuple(sorted((str(k), _freeze_key(x)) for k, x in v.items()))
        return _NO_CACHE if any(x is _NO_CACHE for _, x in items) else items
    if isinstance(v, (list, tuple)):
        items = tuple(_freeze_key(x) for x in v)
        return _NO_CACHE if any(x is _NO_CACHE for x in items) else items
    return _NO_CACHE


class Stylizer:
    """A trained network ready to stylize: `Stylizer.load(ckpt)` dispatches on the export's kind.

    The output has the input's size (after `max_size`, which caps the long side). Grayscale and
    palette images are stylized in colour; RGBA keeps its alpha channel; EXIF rotation is applied.
    """

    def __init__(self, net: StyleNetwork, info: ExportInfo | None = None, device: str = "auto",
                 half: bool = False, channels_last: bool = True):
        self.device = pick_device(device)
        self.half = half and self.device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(self.device, memory_format=self.memory_format).eval()
        if self.half:
            self.net = self.net.half()
        self.info = info
        self._conditions: dict[Any, Any] = {}

    @classmethod
    def load(cls, ckpt: str | os.PathLike, device: str = "auto", **kwargs) -> "Stylizer":
        net, info = load_network(find_checkpoint(ckpt))
        return cls(net, info, device=device, **kwargs)

    @property
    def kind(self) -> str:
        return self.net.kind

    @property
    def styles(self) -> list[str]:
        """The names of the paintings the network holds (style= choices)."""
        return self.net.style_names

    @property
    def name(self) -> str:
        """The export's file name (stem), or its painting for an in-memory per-style network."""
        if self.info is not None and self.info.path is not None:
            return self.info.path.stem
        return self.styles[0] if len(self.styles) == 1 else self.kind

    def condition(self, style: str | None = None, style_weights: Mapping[str, float] | Sequence[float] | None = None,
                  style_image: Any = None) -> Any:
        """The network's conditioning for these style arguments, computed once and cached (a style
        image given as a file path is cached by path; images and tensors are not cached)."""
        key = (style, _freeze_key(style_weights), _freeze_key(style_image))
        if _NO_CACHE in key:
            return self.net.condition(style=style, style_weights=style_weights, style_image=style_image)
        if key not in self._conditions:
            self._conditions[key] = self.net.condition(style=style, style_weights=style_weights,
                                                       style_image=style_image)
        return self._conditions[key]

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, style: str | None = None,
                       style_weights: Mapping[str, float] | Sequence[float] | None = None,
                       style_image: Any = None, strength: float = 1.0) -> torch.Tensor:
        """The tensor path everything else builds on: (B, 3, H, W) float in [0, 1], any H, W, on any
        device -> stylized (B, 3, H, W) float32 in [0, 1], on the device `x` came from. Every image
        of the batch gets the same style arguments (see the module docstring)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"stylize_tensor expects (B, 3, H, W), got {tuple(x.shape)}")
        check_strength(strength)
        cond = self.condition(style, style_weights, style_image)
        src = x.device
        x = x.to(self.device, torch.float16 if self.half else torch.float32,
                 memory_format=self.memory_format, non_blocking=True)
        return self.net.stylize(x, cond, strength).float().clamp_(0, 1).to(src)

    def stylize_batch(self, images: list[Image.Image], **style) -> list[Image.Image]:
        """Images of one size go through the network as one batch. `style`: as `stylize_tensor`."""
        rgb = [to_rgb(im) for im in images]
        if len({im.size for im in rgb}) != 1:
            return [self(im, **style) for im in images]
        out = self.stylize_tensor(torch.stack([pil_to_tensor(im) for im in rgb]), **style)
        return [self._restore_alpha(src, tensor_to_pil(o)) for src, o in zip(images, out)]

    @staticmethod
    def _restore_alpha(src: Image.Image, out: Image.Image) -> Image.Image:
        if src.mode in ("RGBA", "LA") or (src.mode == "P" and "transparency" in src.info):
            out = out.convert("RGBA")
            out.putalpha(src.convert("RGBA").getchannel("A"))
        return out

    def __call__(self, image: Image.Image | str | os.PathLike, style: str | None = None,
                 style_weights: Mapping[str, float] | Sequence[float] | None = None, style_image: Any = None,
                 strength: float = 1.0, max_size: int | None = None) -> Image.Image:
        if not isinstance(image, Image.Image):
            image = open_image(image)
        if image.width < 1 or image.height < 1:
            raise ImageError("empty image")
        image = limit_size(image, max_size)
        return self.stylize_batch([image], style=style, style_weights=style_weights, style_image=style_image,
                                  strength=strength)[0]
