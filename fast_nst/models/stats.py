"""Statistics of feature maps that losses and networks share: Gram matrices (style, Johnson et
al. 2016) and per-channel mean and standard deviation (AdaIN, Huang & Belongie 2017). Computed in
float32 whatever the input's dtype."""

from __future__ import annotations

import torch


def gram_matrix(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) Gram matrix normalised by C*H*W, as in Johnson et al. eq. 3.

    Computed in float32 even under autocast: bf16 sums over H*W lose too much precision.
    """
    b, c, h, w = feat.shape
    if c > 1 and feat.is_contiguous(memory_format=torch.channels_last) and not feat.is_contiguous():
        # NHWC memory is a (B, H*W, C) matrix already: F F^T = V^T V without a layout copy.
        v = feat.permute(0, 2, 3, 1).reshape(b, h * w, c).float()
        return torch.bmm(v.transpose(1, 2), v) / (c * h * w)
    f = feat.reshape(b, c, h * w).float()
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def channel_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel: mean and standard deviation over H, W, each (B, C, 1, 1), float32.

    The std is sqrt(unbiased variance + eps), the statistic the AdaIN decoder was trained with
    (Huang & Belongie 2017), so targets and losses agree with the pretrained weights.
    """
    b, c = feat.shape[:2]
    var, mean = torch.var_mean(feat.reshape(b, c, -1).float(), dim=2)
    return mean.view(b, c, 1, 1), (var + eps).sqrt().view(b, c, 1, 1)
