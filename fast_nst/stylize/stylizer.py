"""Single-pass inference with an exported network of any kind.

    stylizer = Stylizer.load("checkpoints/multi_style.safetensors")
    stylizer(photo, style="the_scream")                                     # PIL in, PIL out
    stylizer(photo, style_weights={"starry_night": 0.7, "the_scream": 0.3})  # mix paintings
    stylizer(photo, strength=0.5)                                           # half-way to the photo
    stylizer.stylize_tensor(x, style="udnie")                               # (B,3,H,W) in [0,1]
    adain = Stylizer.load("adain")                  # a kind's pretrained weights, fetched on first use
    adain(photo, style_image="painting.jpg", strength=0.8)                  # any painting
    fast = Stylizer.load("starry_night", runtime="onnx-int8")               # ONNX Runtime, int8 (CPU)

Style arguments everywhere: `style` (one of the network's paintings, by name), `style_weights`
(a mix: {name: weight}, normalised to sum 1), `style_image` (painting file(s) or images, for
arbitrary-style kinds) and `strength` (0 = the photo, 1 = full style). What they mean for a kind
is the kind's `condition`/`stylize` (fast_nst/kinds/); the resolved conditioning is cached, so a
folder or a video pays for it once.

The network is anything with the inference interface of fast_nst.kinds.base (`InferenceNetwork`):
a PyTorch kind, or an ONNX graph behind `fast_nst.stylize.onnx.OnnxNetwork` (`runtime=`, see
fast_nst.stylize.runtimes). What it can do (devices, float16, tiles) is its declared `capabilities`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from fast_nst.stylize.color import finish
from fast_nst.io.export import ExportInfo
from fast_nst.io.errors import ConfigError, MissingPathError
from fast_nst.io.images import ImageError, limit_size, open_image, pil_to_tensor, tensor_to_pil, to_rgb
from fast_nst.io.paths import PROJECT_ROOT
from fast_nst.kinds.base import InferenceNetwork, check_strength

CHECKPOINT_DIR = PROJECT_ROOT / "checkpoints"  # the shipped models: the checkout's, or the installed copy


def pick_device(device: str = "auto", allowed: tuple[str, ...] | None = None) -> torch.device:
    """`device` as a torch.device; `auto`: CUDA when present (and in `allowed`, the device types
    a network runs on; None = any), else the CPU."""
    if device == "auto":
        cuda = torch.cuda.is_available() and (allowed is None or "cuda" in allowed)
        return torch.device("cuda" if cuda else "cpu")
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
    from fast_nst.kinds import pretrained_kinds

    avail = sorted({f.stem for d in dirs if d.is_dir() for f in d.glob("*.safetensors")})
    raise MissingPathError(f"ckpt={ckpt}: no such file and no '{ckpt}.safetensors' in "
                            f"{', '.join(str(d) for d in dirs)}. Available: {avail or 'none'}; "
                            f"pretrained kinds (no file needed): {', '.join(pretrained_kinds()) or 'none'}; "
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
    """A trained network ready to stylize: `Stylizer.load(ckpt)` dispatches on the export's kind
    (and `runtime=`, fast_nst.stylize.runtimes: by default the file as it is, PyTorch for an export;
    `onnx`/`onnx-int8` for ONNX Runtime on the CPU; stylize.py and the web page default to `auto`).

    The output has the input's size (after `max_size`, which caps the long side). Grayscale and
    palette images are stylized in colour; RGBA keeps its alpha channel; EXIF rotation is applied.

    Everything goes through `stylize_tensor` ((B, 3, H, W) in [0, 1] -> same shape), which images,
    video (fast_nst.stylize.video) and tiles share: `preserve_color` / `strength` (fast_nst.stylize.color) finish
    the network's output, `tile` > 0 runs images larger than that in tiles with whole-image
    instance-norm statistics (fast_nst.stylize.tiling; networks whose capabilities include tiles).
    """

    def __init__(self, net: InferenceNetwork, info: ExportInfo | None = None,
                 device: str = "auto", half: bool = False, channels_last: bool = True, *,
                 preserve_color: bool = False, tile: int | None = None, tile_overlap: int = 64,
                 tile_stats: str = "thumbnail", tile_stats_size: int = 2048, style_size: int | None = None):
        caps = net.capabilities
        self.preserve_color = bool(preserve_color)
        # long side of style_image paintings for arbitrary-style kinds (None: the kind's default)
        self.style_size = int(style_size) if style_size else None
        self.device = pick_device(device, caps.devices)
        if caps.devices is not None and self.device.type not in caps.devices:
            raise ConfigError(f"device={device}: {caps.runtime} runs on {', '.join(caps.devices)}; "
                              "use device=auto or cpu, or runtime=torch")
        self.half = half and self.device.type == "cuda"
        if self.half and not caps.half:
            raise ConfigError(f"half=true: {caps.runtime} has no float16 path; use runtime=torch")
        channels_last = channels_last and caps.channels_last  # a layout hint: ignored where it means nothing
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.prepare(self.device, self.half, channels_last)
        self.info = info
        self._conditions: dict[Any, Any] = {}
        self.tile = int(tile) if tile else None
        if self.tile:
            from fast_nst.stylize.tiling import STATS_MODES, tile_spans

            if not caps.tiles:
                raise ConfigError(f"tile= needs runtime=torch: tiles take whole-image instance-norm statistics from "
                                  f"the network's norm layers, which {caps.runtime} does not expose")
            if tile_stats not in STATS_MODES:
                raise ValueError(f"tile_stats must be one of {', '.join(STATS_MODES)}, got {tile_stats!r}")
            tile_spans(4 * self.tile, self.tile, tile_overlap)  # raises on a bad tile / overlap pair now
        self.tile_overlap, self.tile_stats, self.tile_stats_size = tile_overlap, tile_stats, tile_stats_size
        self.runtime_note = ""  # set by load: why runtime=auto chose what it chose, when the user should know

    @classmethod
    def load(cls, ckpt: str | os.PathLike, device: str = "auto", runtime: str | None = None,
             session: dict | None = None, **kwargs) -> "Stylizer":
        """`ckpt`: an export (.safetensors), one of its ONNX graphs (.onnx), a name in checkpoints/,
        or a kind with pretrained weights (e.g. "adain"). `runtime`: one of fast_nst.stylize.runtimes.RUNTIMES;
        None runs the file as it is (PyTorch for an export, ONNX Runtime for a graph). `session`:
        ONNX Runtime options when a graph runs (threads, spinning: fast_nst.stylize.onnx.OnnxStylizer)."""
        from fast_nst.stylize.runtimes import open_network

        try:
            path, pretrained = find_checkpoint(ckpt), None
        except MissingPathError:
            from fast_nst.kinds import pretrained_network

            # ckpt=<kind>: a kind's own pretrained weights (e.g. AdaIN's), fetched on first use
            pretrained = pretrained_network(str(ckpt)) if not Path(str(ckpt)).suffix else None
            if pretrained is None:
                raise
            path = None
        wants = [k for k in ("tile", "half") if kwargs.get(k)]
        opened = open_network(path, runtime, device=device, pretrained=pretrained, session=session,
                              wants_torch=", ".join(f"{k}=" for k in wants))
        st = cls(opened.net, opened.info, device=device, **kwargs)
        st.runtime, st.runtime_note = opened.runtime, opened.note
        return st

    @property
    def capabilities(self):
        return self.net.capabilities

    @property
    def kind(self) -> str:
        return self.net.kind

    @property
    def styles(self) -> list[str]:
        """The names of the paintings the network holds (style= choices)."""
        return self.net.style_names

    @property
    def style_name(self) -> str:
        """The painting of a per-style network (or the export's name for others)."""
        names = self.net.style_names
        return names[0] if len(names) == 1 else self.name

    @property
    def name(self) -> str:
        """The export's file name (stem), or its painting for an in-memory per-style network."""
        if self.info is not None and self.info.path is not None:
            return self.info.path.stem
        names = self.net.style_names
        return names[0] if len(names) == 1 else self.kind

    def condition(self, style: str | None = None, style_weights: Mapping[str, float] | Sequence[float] | None = None,
                  style_image: Any = None) -> Any:
        """The network's conditioning for these style arguments, computed once and cached (a style
        image given as a file path is cached by path; images and tensors are not cached)."""
        kw = {"style_size": self.style_size} if self.net.arbitrary_style else {}
        key = (style, _freeze_key(style_weights), _freeze_key(style_image))
        if _NO_CACHE in key:
            return self.net.condition(style=style, style_weights=style_weights, style_image=style_image, **kw)
        if key not in self._conditions:
            self._conditions[key] = self.net.condition(style=style, style_weights=style_weights,
                                                       style_image=style_image, **kw)
        return self._conditions[key]

    def clear_conditions(self) -> None:
        """Forget the cached conditionings: a job drawing from thousands of paintings bounds its
        memory this way (an AdaIN conditioning holds the painting's VGG features)."""
        self._conditions.clear()

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor, style: str | None = None,
                       style_weights: Mapping[str, float] | Sequence[float] | None = None,
                       style_image: Any = None, strength: float = 1.0) -> torch.Tensor:
        """The tensor path everything else builds on: (B, 3, H, W) float in [0, 1], any H, W, on any
        device -> stylized (B, 3, H, W) float32 in [0, 1], on the device `x` came from. Every image
        of the batch gets the same style arguments (see the module docstring). Tiles and
        preserve_color (set on the Stylizer) apply here, so images, video and tiles share them."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"stylize_tensor expects (B, 3, H, W), got {tuple(x.shape)}")
        check_strength(strength)
        src = x.device
        if strength == 0.0 and self.net.strength_blends:
            return x.detach().float().clone()  # the photo itself: skip the network
        cond = self.condition(style, style_weights, style_image)
        if self.tile and max(x.shape[-2:]) > self.tile:
            from fast_nst.stylize.tiling import stylize_tiled

            whole = x.detach().float().cpu()
            if cond is None:
                y = stylize_tiled(self.net, whole, tile=self.tile, overlap=self.tile_overlap,
                                  stats=self.tile_stats, stats_size=self.tile_stats_size)
            else:
                y = torch.cat([stylize_tiled(self._conditioned(whole[k:k + 1], cond, strength), whole[k:k + 1],
                                             tile=self.tile, overlap=self.tile_overlap, stats=self.tile_stats,
                                             stats_size=self.tile_stats_size) for k in range(len(whole))])
            # a kind whose strength is not a blend with the photo took it in its conditioning
            y = finish(y, whole, preserve_color=False, strength=strength if self.net.strength_blends else 1.0)
        else:
            xd = x.to(self.device, torch.float16 if self.half else torch.float32,
                      memory_format=self.memory_format, non_blocking=True)
            own_color = self.net.own_preserve_color
            kw = {"preserve_color": self.preserve_color} if own_color else {}
            y = self.net.stylize(xd, cond, strength, **kw).float().clamp_(0, 1)
            if own_color:
                return y.clamp_(0, 1).to(src)
        if self.preserve_color:
            y = finish(y.cpu(), x.detach().float().cpu(), preserve_color=True, strength=1.0)
        return y.clamp_(0, 1).to(src)

    def _conditioned(self, image: torch.Tensor, cond: Any, strength: float) -> torch.nn.Module:
        """The network with its conditioning fixed, as a module of the image alone, for tiles: the
        conditioning (and, for a kind whose strength is not a blend, the photo's side of it) comes
        from the whole image, once, through the kind's graph inputs, so every tile gets the same."""
        if not self.net.graph_export:
            raise ConfigError(f"tile= does not work with {self.net.kind} networks (their conditioning is not a "
                              "fixed input of the network); stylize without tile=, or with max_size= to bound memory")
        net = self.net
        feed = [t.to(self.device, next(net.parameters()).dtype)
                for t in net.graph_feed(image.to(self.device), cond, strength).values()]

        class Conditioned(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net  # a submodule: the tiler finds its norm layers and its device

            def forward(self, piece: torch.Tensor) -> torch.Tensor:
                return self.net.graph_forward(piece, *feed)

        return Conditioned()

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
