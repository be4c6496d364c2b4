"""`StyleAugment`: style augmentation (Jackson et al., CVPR-W 2019) as a torchvision v2 transform.

Each image of a batch is, with probability `p`, re-rendered by Magenta's arbitrary-stylization
network (kind `magenta`, Ghiasi et al. 2017) under a random style embedding: drawn from a Gaussian
fitted to the embeddings of a folder of paintings (`mode="gaussian"`, the paper's choice) or
interpolated between two of its paintings (`mode="interpolate"`). The strength `a`, drawn per
image from `strength_range`, mixes it with the photo's own embedding, `a * z + (1 - a) * P(photo)`,
so small values keep more of the photo. Shapes, dtypes (uint8 or float in [0, 1]) and the device
are kept; images not drawn pass through unchanged. It runs on batches on the training device,
after the loader (in the training loop, or as the last step of a GPU-side pipeline):

    import torch
    from torchvision.transforms import v2
    from fast_nst.dataset.augment import StyleAugment

    augment = v2.Compose([
        StyleAugment("paintings/", p=0.5, strength_range=(0.3, 1.0), seed=0).to("cuda"),  # uint8 or [0, 1]
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    for images, labels in loader:            # loader: v2.RandomResizedCrop(224), v2.PILToTensor(), ...
        images = augment(images.to("cuda", non_blocking=True))   # (B, 3, 224, 224) uint8 -> float
        loss = criterion(classifier(images), labels.to("cuda"))

`StyleAugment` draws from its own generator (`seed`): the same seed gives the same draws. It is
meant for the main process; inside DataLoader workers every worker would copy that generator,
so give each its own seed there (`worker_init_fn`). The network is frozen and runs without grad.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2._utils import is_pure_tensor

MODES = ("gaussian", "interpolate")


def _painting_files(paintings: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    from fast_nst.io.images import list_images, resolve_path
    from fast_nst.io.paths import PROJECT_ROOT

    if paintings is None:
        return list_images(PROJECT_ROOT / "assets" / "styles")
    if isinstance(paintings, (str, os.PathLike)):
        folder = resolve_path(paintings)
        if not folder.is_dir():
            raise FileNotFoundError(f"StyleAugment paintings={paintings}: no such folder; give a folder of "
                                    "paintings (or a list of painting files)")
        return list_images(folder)
    return [resolve_path(p) for p in paintings]


class StyleAugment(v2.Transform):
    """Random style embeddings through Magenta's network (see the module docstring).

    paintings       a folder of paintings (searched recursively), a list of painting files, or
                    None for the bundled ones (assets/styles); embedded once, here
    p               probability that an image is stylized
    strength_range  (low, high): each stylized image's strength, uniform in it, in [0, 1]
    mode            "gaussian": z ~ N(mean, cov) of the paintings' embeddings (cov shrunk by
                    `shrinkage` towards its diagonal, so a few paintings still give a proper
                    Gaussian); "interpolate": z between two random paintings, uniform along the line
    seed            seeds the transform's own generator (None: a random seed)
    network         an embedding-conditioned network (kind magenta, e.g. a fine-tuned export's
                    `Stylizer.load(path).net`); None = Magenta's pretrained weights (fetched once)
    """

    _transformed_types = (tv_tensors.Image, is_pure_tensor)

    def __init__(self, paintings: Any = None, p: float = 0.5, strength_range: tuple[float, float] = (0.5, 1.0),
                 mode: str = "gaussian", seed: int | None = None, network: torch.nn.Module | None = None,
                 shrinkage: float = 0.1):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"StyleAugment p={p}: a probability, between 0 and 1")
        lo, hi = (float(v) for v in strength_range)
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"StyleAugment strength_range={tuple(strength_range)}: need 0 <= low <= high <= 1")
        if mode not in MODES:
            raise ValueError(f"StyleAugment mode={mode!r}: one of {', '.join(MODES)}")
        if not 0.0 <= float(shrinkage) <= 1.0:
            raise ValueError(f"StyleAugment shrinkage={shrinkage}: between 0 (sample covariance) and 1 (its diagonal)")
        if network is None:
            from fast_nst.kinds.magenta import MagentaNetwork

            network, _ = MagentaNetwork.pretrained()
        if not (hasattr(network, "embed") and hasattr(network, "style_params")):
            raise TypeError(f"StyleAugment network: an embedding-conditioned network (kind magenta), got "
                            f"{type(network).__name__}")
        self.p, self.strength_range, self.mode = float(p), (lo, hi), mode
        self.net = network.eval().requires_grad_(False)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()  # a random seed, leaving torch's global generator alone
        else:
            self.generator.manual_seed(int(seed))

        from fast_nst.io.images import ImageError, load_rgb, pil_to_tensor

        files = _painting_files(paintings)
        if not files:
            raise FileNotFoundError(f"StyleAugment paintings={paintings}: no paintings found")
        device = next(self.net.parameters()).device
        with torch.no_grad():
            rows = []
            for f in files:
                try:
                    img = pil_to_tensor(load_rgb(f, max_size=self.net.style_size)).unsqueeze(0)
                except ImageError as e:
                    raise ValueError(f"StyleAugment paintings: {e}") from None
                rows.append(self.net.embed(img.to(device)).float().cpu())
        emb = torch.cat(rows)
        self.register_buffer("embeddings", emb)
        mean = emb.mean(0)
        centred = emb - mean
        cov = centred.T @ centred / max(1, len(emb) - 1)
        cov = (1 - shrinkage) * cov + shrinkage * torch.diag(torch.diagonal(cov))
        cov += 1e-6 * (torch.diagonal(cov).mean() + 1e-6) * torch.eye(len(mean))
        self.register_buffer("mean", mean)
        self.register_buffer("scale_tril", torch.linalg.cholesky(cov.double()).float())

    def train(self, mode: bool = True) -> "StyleAugment":
        super().train(mode)
        self.net.eval()  # frozen either way
        return self

    def sample_embeddings(self, n: int) -> torch.Tensor:
        """(n, 100) random style embeddings from the transform's generator (on the CPU)."""
        g = self.generator
        if self.mode == "gaussian":
            eps = torch.randn(n, len(self.mean), generator=g)
            return self.mean.cpu() + eps @ self.scale_tril.cpu().T
        k = len(self.embeddings)
        i, j = torch.randint(k, (n,), generator=g), torch.randint(k, (n,), generator=g)
        t = torch.rand(n, 1, generator=g)
        e = self.embeddings.cpu()
        return torch.lerp(e[i], e[j], t)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        x = flat_inputs[0] if flat_inputs else None  # forward passes only the inputs to transform
        n = 1 if x is None or x.dim() == 3 else int(x.shape[0])
        g = self.generator
        apply = torch.rand(n, generator=g) < self.p
        lo, hi = self.strength_range
        strength = lo + (hi - lo) * torch.rand(n, generator=g)
        return {"apply": apply, "strength": strength, "style": self.sample_embeddings(n)}

    def transform(self, inpt: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        single = inpt.dim() == 3
        x = inpt.unsqueeze(0) if single else inpt
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"StyleAugment takes RGB images (B, 3, H, W) or (3, H, W), got {tuple(inpt.shape)}")
        idx = params["apply"].nonzero().flatten()
        if len(idx) == 0:
            return inpt
        idx = idx.to(x.device)
        integer = not x.dtype.is_floating_point
        photos = x.index_select(0, idx).float()
        if integer:
            photos = photos / torch.iinfo(x.dtype).max
        with torch.no_grad():
            dtype = self.net.style_params.linear.weight.dtype
            own = self.net.embed(photos).to(dtype)
            style = params["style"].to(x.device, dtype)[idx]
            a = params["strength"].to(x.device, dtype)[idx].unsqueeze(1)
            out = self.net(photos.to(dtype), torch.lerp(own, style, a)).float().clamp_(0, 1)
        if integer:
            out = out.mul_(torch.iinfo(x.dtype).max).round_()
        y = x.clone()
        y[idx] = out.to(x.dtype)
        y = y[0] if single else y
        return tv_tensors.wrap(y, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else y

    def extra_repr(self) -> str:
        return (f"p={self.p}, strength_range={self.strength_range}, mode={self.mode}, "
                f"paintings={len(self.embeddings)}")


__all__ = ["StyleAugment", "MODES"]
