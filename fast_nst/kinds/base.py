"""`StyleNetwork`: what every network kind provides to training, export and `Stylizer`.

A kind is an `nn.Module` subclass of `StyleNetwork`. The rest of the code only calls the methods
below, so a kind decides how its network is built, trained, exported and conditioned on a style:

construction   `kind(styles, **config)`; `self.config` holds the JSON kwargs besides `styles`.
               `for_training(config, paintings, base)` builds the network a run trains
               (`base`: an export to continue from, e.g. add_style); `from_export(info, tensors)`
               rebuilds a trained one; `export_tensors()` is what an export stores.
inference      `condition(style=, style_weights=, style_image=)` turns a user's choice into the
               kind's conditioning (computed once, reused for every image);
               `stylize(x, cond, strength)` maps (B, 3, H, W) in [0, 1] to the same.
training       `build_objective(loss, loss_net, vgg_pass)` -> the criterion (holds the frozen VGG);
               `draw_styles(n, generator)` -> which painting each image of a batch trains with;
               `training_step(objective, batch, style_index, forward)` -> (output, loss terms);
               `validation_styles()` -> one grid column per entry;
               `parameter_groups()` -> what the optimizer updates.

The defaults implement networks trained against fixed Gram targets of a list of paintings
(Johnson's per-style net, the conditional-instance-norm multi-style net). Arbitrary-style kinds
(AdaIN, style prediction) set `arbitrary_style = True` and override `condition`,
`build_objective` and `training_step`; their paintings are training data (the data module's
painting folder), not part of the network, so `styles` is empty. A kind whose `stylize` has its
own strength control sets `strength_blends = False` (strength 0 then still runs the network); one
with its own colour control sets `own_preserve_color = True` (`stylize` then takes
`preserve_color=`); one that ships pretrained weights overrides `pretrained()` so that
`ckpt=<kind>` needs no export file.

runtime        `capabilities` declares what `Stylizer` may ask of a network (devices, float16,
               channels_last, tiles); `prepare(device, half, channels_last)` puts it there.
               `fast_nst.stylize.onnx.OnnxNetwork` implements the same inference interface
               (`InferenceNetwork`) for an ONNX graph, so `Stylizer` never asks which it has.
ONNX export    the graph is `graph_forward(x, *inputs)`, for the inputs named by `graph_inputs()`
               ({name: width} of (B, width) float tensors: the conditioning, e.g. a multi-style
               network's mixing weights); `graph_feed(x, cond, strength)` computes them in PyTorch
               at inference, from what `condition` returned. Per-style networks need none of the
               three. The graph pads each image side to a multiple of 4 (at least 8, by reflection)
               and crops the output back, as TransformerNet.forward does: a network whose picture
               would change under that padding pads the same way itself. A kind that cannot be
               written as a graph sets `graph_export = False`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Protocol, Sequence

import torch
from torch import nn

from fast_nst.io.errors import ConfigError
from fast_nst.io.paintings import Painting

if TYPE_CHECKING:
    from fast_nst.io.export import ExportInfo


class StyleChoiceError(ConfigError):
    """The style asked for does not fit the network (unknown name, missing choice, bad weights)."""


def mixing_weights(style_weights: Mapping[str, float] | Sequence[float], names: list[str]) -> list[float]:
    """`{name: w}` (or one weight per painting, in the network's order) -> weights summing to 1."""
    if isinstance(style_weights, Mapping):
        unknown = sorted(set(style_weights) - set(names))
        if unknown:
            raise StyleChoiceError(f"style_weights names {unknown}, which this network does not know; "
                                   f"its paintings: {', '.join(names)}")
        w = [float(style_weights.get(n, 0.0)) for n in names]
    else:
        w = [float(v) for v in style_weights]
        if len(w) != len(names):
            raise StyleChoiceError(f"style_weights has {len(w)} values for {len(names)} paintings "
                                   f"({', '.join(names)}); or give {{name: weight}}")
    if any(not math.isfinite(v) or v < 0 for v in w) or sum(w) <= 0:
        raise StyleChoiceError(f"style_weights must be >= 0 with a positive sum, got {dict(zip(names, w))}")
    total = sum(w)
    return [v / total for v in w]


@dataclass(frozen=True)
class Capabilities:
    """What a network's runtime can do, declared by the network (not found out by trying)."""

    runtime: str                          # shown to users: "PyTorch", "ONNX Runtime fp32", ...
    devices: tuple[str, ...] | None = None  # device types it runs on (None: any torch device)
    half: bool = True                     # float16 on CUDA
    channels_last: bool = True            # NHWC memory format
    tiles: bool = True                    # tile=: tiles normalised with whole-image statistics, read
                                          # from its instance-norm layers (fast_nst.stylize.tiling)


TORCH = Capabilities("PyTorch")


class InferenceNetwork(Protocol):
    """What `Stylizer` needs of a network, whichever runtime runs it: a `StyleNetwork` (PyTorch)
    or `fast_nst.stylize.onnx.OnnxNetwork` (ONNX Runtime)."""

    kind: str
    arbitrary_style: bool
    strength_blends: bool
    own_preserve_color: bool
    capabilities: Capabilities

    @property
    def style_names(self) -> list[str]: ...

    def prepare(self, device: torch.device, half: bool, channels_last: bool) -> "InferenceNetwork": ...

    def condition(self, style: str | None = None, style_weights: Any = None, style_image: Any = None,
                  **kw) -> Any: ...

    def stylize(self, x: torch.Tensor, cond: Any = None, strength: float = 1.0, **kw) -> torch.Tensor: ...


class StyleNetwork(nn.Module):
    kind: ClassVar[str] = ""
    # Takes the painting as an image at inference (style_image=), e.g. AdaIN, style prediction.
    # Such a kind's `condition` also takes `style_size` (the painting's long side; Stylizer passes it).
    arbitrary_style: ClassVar[bool] = False
    # Each training image draws a painting (per-image targets); False: one painting for all.
    draws_styles: ClassVar[bool] = False
    # stylize(strength) blends the output with the photo, so strength 0 is the photo itself and
    # Stylizer skips the network. False: the kind's own control (AdaIN's alpha, style prediction's
    # embedding interpolation), where strength 0 is a rendering of the photo by the network.
    strength_blends: ClassVar[bool] = True
    # stylize(..., preserve_color=) keeps the photo's colours the kind's own way (AdaIN recolours
    # the painting first); False: Stylizer transfers luminance only after the network.
    own_preserve_color: ClassVar[bool] = False
    # PyTorch runs it anywhere, in float16 and channels_last, and tiles it (see Capabilities).
    capabilities: ClassVar[Capabilities] = TORCH
    # Its inference can be written as one ONNX graph (graph_inputs / graph_feed / graph_forward).
    graph_export: ClassVar[bool] = True

    styles: list[Painting]
    config: dict

    # ------------------------------------------------------------------ construction / export
    @classmethod
    def for_training(cls, config: Mapping, paintings: list[Painting],
                     base: "tuple[ExportInfo, dict[str, torch.Tensor]] | None" = None) -> "StyleNetwork":
        """The network a training run optimises. `base`: an export to continue from (init_from)."""
        if base is not None:
            raise ValueError(f"init_from: {cls.kind} networks cannot continue from an export")
        return cls(paintings, **config)

    @classmethod
    def from_export(cls, info: "ExportInfo", tensors: dict[str, torch.Tensor]) -> "StyleNetwork":
        net = cls(info.styles, **info.network)
        net.load_state_dict(tensors)
        return net

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    @classmethod
    def pretrained(cls) -> "tuple[StyleNetwork, ExportInfo] | None":
        """(network, info) of pretrained weights the kind can fetch itself, so that
        `Stylizer.load("<kind>")` / `stylize.py ckpt=<kind>` work with no export file; None: the
        kind has none (it must be trained)."""
        return None

    @property
    def style_names(self) -> list[str]:
        return [p.name for p in self.styles]

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    # ------------------------------------------------------------------ inference
    def condition(self, style: str | None = None, style_weights: Mapping[str, float] | Sequence[float] | None = None,
                  style_image: Any = None) -> Any:
        """The conditioning for `forward`/`stylize` from one painting name (`style`), a mix of the
        network's paintings (`style_weights`, normalised to sum 1) or, for arbitrary-style kinds,
        painting images (`style_image`)."""
        names = self.style_names
        if style_image is not None:
            raise StyleChoiceError(f"style_image: {self.kind} networks learned their paintings "
                                   f"({', '.join(names) or 'none recorded'}) and cannot take a new one; "
                                   "use style= or an arbitrary-style network kind")
        if style is not None and style_weights is not None:
            raise StyleChoiceError("give style= (one painting) or style_weights= (a mix), not both")
        if style_weights is not None:
            return self.mixed_condition(mixing_weights(style_weights, names))
        if style is None:
            return self.default_condition()
        if style == "all":
            raise StyleChoiceError("style=all means every painting, one output each: loop over "
                                   f"{names} (stylize.py style=all does)")
        if style not in names:
            raise StyleChoiceError(f"style={style}: this network knows {', '.join(names) or 'no paintings'}")
        return self.style_condition(names.index(style))

    def default_condition(self) -> Any:
        """The conditioning when no style is given (per-style networks: their only painting)."""
        return None

    def style_condition(self, index: int) -> Any:
        return None

    def mixed_condition(self, weights: list[float]) -> Any:
        return None

    def stylize(self, x: torch.Tensor, cond: Any = None, strength: float = 1.0) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> stylized, same shape. `strength` < 1 blends with the photo
        (kinds with their own control, e.g. AdaIN's alpha, override this)."""
        check_strength(strength)
        y = self(x, cond)
        return y if strength == 1.0 else torch.lerp(x.to(y.dtype), y, strength)

    def prepare(self, device: torch.device, half: bool, channels_last: bool) -> "StyleNetwork":
        """This network in eval mode on `device` (float16 when `half`), for inference."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        net = self.to(device, memory_format=fmt).eval()
        return net.half() if half else net

    # ------------------------------------------------------------------ ONNX export
    def graph_inputs(self) -> dict[str, int]:
        """The graph's inputs besides the image: {name: width} of (B, width) float tensors."""
        return {}

    def graph_feed(self, x: torch.Tensor, cond: Any, strength: float) -> dict[str, torch.Tensor]:
        """The graph's inputs for this batch (`graph_inputs` names, each (B, width) float32 on the
        CPU), from `condition`'s result. For a kind whose strength is not a blend with the photo
        (`strength_blends = False`), `strength` goes in here too."""
        return {}

    def graph_forward(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """What the ONNX graph computes: (B, 3, H, W) in [0, 1] and the `graph_inputs` tensors in
        their order -> stylized (at strength 1 for kinds whose strength blends)."""
        return self(x, None)

    def example_styles(self) -> list[dict[str, Any]]:
        """Style arguments that together exercise the network (int8 calibration runs each):
        every painting it holds, or the bundled paintings for an arbitrary-style kind."""
        if self.arbitrary_style:
            from fast_nst.io.paintings import BUNDLED_PAINTINGS

            return [{"style_image": str(p)} for p in sorted(BUNDLED_PAINTINGS.glob("*.jpg"))]
        return [{"style": n} for n in self.style_names] if len(self.styles) > 1 else [{}]

    # ------------------------------------------------------------------ training
    def training_style_indices(self) -> list[int]:
        """The paintings this run trains (all; add_style: only the new ones)."""
        return list(range(len(self.styles)))

    def draw_styles(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """The painting of each of `n` training images: every trained painting once per step in a
        random order, repeated to fill the batch (balanced; per-style kinds: None)."""
        if not self.draws_styles:
            return None
        trained = torch.tensor(self.training_style_indices())
        order = trained[torch.randperm(len(trained), generator=generator)]
        return order.repeat(math.ceil(n / len(trained)))[:n]

    def parameter_groups(self) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def build_objective(self, loss: Mapping, loss_net: Mapping, vgg_pass: str) -> nn.Module:
        """PerceptualLoss against the Grams of `self.styles` (one blended target for per-style
        kinds, one per painting for kinds that draw styles)."""
        from fast_nst.models.losses import PerceptualLoss

        images = [painting_tensor(p, loss["style_size"]) for p in self.styles]
        if not self.draws_styles:
            if len(self.styles) != 1:
                raise ValueError(f"{self.kind} networks train on one painting, got {len(self.styles)}")
            crit = PerceptualLoss.build(loss, loss_net, style_weight_scale=self.styles[0].weight, vgg_pass=vgg_pass)
            crit.set_style(images)
        else:
            crit = PerceptualLoss.build(loss, loss_net, vgg_pass=vgg_pass)
            crit.set_styles(images, [p.weight for p in self.styles])
        return crit

    def training_step(self, objective: nn.Module, batch: Any, style_index: torch.Tensor | None,
                      forward: Callable | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(output, terms): `terms["loss"]` is optimised, every scalar term is logged, and
        `terms["style_per_image"]` (B,) when present is logged per painting. `batch` is what the
        data module yields (see `lit_module.prepare_batch`): the photos tensor here; kinds with
        their own data (e.g. (photos, paintings)) take it apart themselves. `output` must have the
        photos' shape (it fills a validation grid column)."""
        out = (forward or self)(batch, style_index)
        return out, objective(out, batch, style_index)

    def validation_styles(self) -> list[tuple[str, int | None]]:
        """(column label, painting index for `style_index`, or None) per validation grid column."""
        if not self.draws_styles:
            return [(self.style_names[0] if self.styles else "stylized", None)]
        return [(p.name, i) for i, p in enumerate(self.styles)]


def model_defaults(config_name: str) -> dict:
    """conf/model/<config_name>.yaml without `kind`: the one home of a kind's defaults, for the
    networks a kind builds without a run's config (`pretrained()`, ckpt=<kind>)."""
    from fast_nst.io.paths import group_config

    return group_config("model", config_name)


def embedding_feed(net: StyleNetwork, x: torch.Tensor, cond: torch.Tensor, strength: float) -> torch.Tensor:
    """The (B, D) embedding an embedding kind's graph takes (style prediction, magenta): the
    painting's `cond` for every image, moved towards each photo's own embedding (`net.embed(x)`,
    run in PyTorch) when `strength` < 1, as the kind's `stylize` does."""
    e = cond.float().cpu().expand(x.shape[0], -1)
    if strength < 1.0:
        e = torch.lerp(net.embed(x.to(net.device)).float().cpu(), e, float(strength))
    return e


def check_strength(strength: float) -> None:
    if not 0.0 <= float(strength) <= 1.0:
        raise StyleChoiceError(f"strength={strength}: must be between 0 (the photo) and 1 (full style)")


def painting_tensor(p: Painting, style_size: int | None) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: the painting's file on this machine, long side `style_size`."""
    from fast_nst.io.images import ImageError, load_rgb, pil_to_tensor
    from fast_nst.io.paintings import locate_painting

    try:
        return pil_to_tensor(load_rgb(locate_painting(p), max_size=style_size)).unsqueeze(0)
    except ImageError as e:  # a damaged painting: one line naming it, not a traceback from the objective
        raise ConfigError(f"painting {p.name}: {e}; give another painting file (style.image= or styles=)") from e


def paired_batch(batch: Any, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(photos, paintings) from a training batch of `fast_nst.training.data.paintings` (a pair of tensors)."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2 and all(isinstance(b, torch.Tensor) for b in batch):
        return batch[0], batch[1]
    raise TypeError(f"a {kind} network trains on (photos, paintings) batches: use a data config whose "
                    "_target_ is fast_nst.training.data.paintings.PhotoPaintingDataModule (data=photos_paintings, "
                    f"as experiment={kind} does), with styles.root=FOLDER_OF_PAINTINGS")


def leave_out_of_checkpoints(module: nn.Module, part: str) -> None:
    """Keep the frozen sub-module at dotted path `part` (e.g. "model.encoder") out of `module`'s
    state dict and out of load_state_dict's missing keys: its weights are pinned downloads or the
    loss network, rebuilt on load, so exports and checkpoints hold only what trains."""

    def drop(mod, state_dict, prefix, local_metadata) -> None:
        for k in [k for k in state_dict if k.startswith(f"{prefix}{part}.")]:
            del state_dict[k]

    def not_missing(mod, incompatible) -> None:
        # the keys are the whole load's (e.g. "net.model.encoder..." from a Lightning module)
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if f".{part}." not in f".{k}"]

    module._register_state_dict_hook(drop)
    module.register_load_state_dict_post_hook(not_missing)


def trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def arbitrary_paintings(kind: str, style: Any = None,
                        style_weights: Mapping[str, float] | Sequence[float] | None = None,
                        style_image: Any = None, style_size: int | None = None
                        ) -> tuple[list[torch.Tensor], list[float]]:
    """What an arbitrary-style kind's `condition` gets from a user's choice: the paintings as
    (1, 3, H, W) tensors in [0, 1] (long side at most `style_size`, never upscaled) and their
    weights, summing to 1.

    `style_image`: a painting file, a PIL image, a (3, H, W) / (1, 3, H, W) tensor, or a list of
    them; `style` is accepted as one painting too (a bundled name such as "starry_night", or a
    file). `style_weights`: one per painting, or {file stem: weight}; default equal.
    """
    from PIL import Image

    from fast_nst.io.images import ImageError, limit_size, load_rgb, pil_to_tensor, to_rgb
    from fast_nst.io.paintings import resolve_painting

    if style is not None and style_image is not None:
        raise StyleChoiceError("give the painting once: style_image=FILE (or style=a bundled painting name)")
    if style is not None:
        if style == "all":
            raise StyleChoiceError(f"style=all: this {kind} network holds no paintings of its own to loop over; "
                                   "give style_image=PAINTING (or a list of them)")
        try:
            style_image = str(resolve_painting(style).image)
        except ImageError as e:
            raise StyleChoiceError(f"style={style}: {e}") from None
    if style_image is None:
        raise StyleChoiceError(
            f"this {kind} network takes any painting, and none was given: add style_image=PAINTING.jpg "
            "(stylize.py), or several mixed: 'style_image=[a.jpg,b.jpg]' 'style_weights=[0.6,0.4]'")
    items = list(style_image) if isinstance(style_image, (list, tuple)) else [style_image]
    if not items:
        raise StyleChoiceError("style_image=[] is empty: give at least one painting")
    tensors, names = [], []
    for i, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            t = item.unsqueeze(0) if item.dim() == 3 else item
            if t.dim() != 4 or t.shape[:2] != (1, 3):
                raise StyleChoiceError(f"style_image {i}: a tensor must be one RGB image (3, H, W) or (1, 3, H, W) "
                                       f"in [0, 1], got shape {tuple(item.shape)}")
            if style_size and max(t.shape[-2:]) > style_size:
                s = style_size / max(t.shape[-2:])
                t = torch.nn.functional.interpolate(
                    t.float(), size=(max(1, round(t.shape[-2] * s)), max(1, round(t.shape[-1] * s))),
                    mode="bilinear", antialias=True, align_corners=False)
            tensors.append(t.float())
            names.append(f"image{i}")
        elif isinstance(item, Image.Image):
            tensors.append(pil_to_tensor(limit_size(to_rgb(item, (255, 255, 255)), style_size)).unsqueeze(0))
            names.append(f"image{i}")
        else:
            from fast_nst.io.images import resolve_path

            spec = str(item)
            try:
                path = resolve_painting(spec).image if not resolve_path(spec).is_file() else spec
                tensors.append(pil_to_tensor(load_rgb(path, max_size=style_size)).unsqueeze(0))
            except ImageError as e:
                raise StyleChoiceError(f"style_image={spec}: {e}") from None
            from pathlib import Path

            names.append(Path(spec).stem)
    if style_weights is None:
        weights = [1.0 / len(tensors)] * len(tensors)
    else:
        if len(set(names)) != len(names) and isinstance(style_weights, Mapping):
            raise StyleChoiceError(f"style_weights as {{name: weight}} needs distinct painting names, got {names}; "
                                   "give a list, one weight per style_image")
        weights = mixing_weights(style_weights, names)
    return tensors, weights
