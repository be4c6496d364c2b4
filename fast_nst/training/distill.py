"""Distillation: train a network to reproduce a shipped one (the teacher), e.g. a compact network
from a full-width zoo model (`python train.py experiment=distill teacher=starry_night`).

The teacher is an export, frozen and run forward only on each training batch (a multi-style
teacher with each image's painting, the same one the student draws). The student's loss is the
teacher's own training objective (content, style, TV: the loss recorded in the teacher's export)
plus two targets from the teacher's output:

    pixel    pixel_weight x mean squared difference of the two outputs (RGB in [0, 1])
    feature  feature_weight x sum over `feature_layers` (weight per layer) of the mean squared
             difference of the loss network's activations of the two outputs

The objective keeps the student a stylization network in its own right (it is scored on it);
the teacher's output gives it a far more direct target than Gram matrices do, so a small network
gets close to the teacher in few steps. `Distillation` has `PerceptualLoss`'s call signature
(output, content, style_index) -> terms, so every kind whose training step calls its objective
that way (johnson, cin) trains under it unchanged.

`pixel_only` (set per step by the training module, from `distill.pixel_only`): train on the pixel
target alone, with no loss-network pass at all. Such a step costs the teacher's forward and the
student's forward and backward, a small fraction of a step with the loss network on a CPU (the
figure is in conf/train.yaml, distill.pixel_only), so the first part of a run brings the student
close to the teacher cheaply and the rest adds the
objective and the feature target that restore the texture the pixel target blurs. Validation
always computes every term.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
import torch.nn.functional as F

from fast_nst.models.losses import PerceptualLoss

# the kinds a teacher or a student may be: networks trained against fixed paintings' Grams
DISTILLABLE_KINDS = ("johnson", "cin")


class Distillation(nn.Module):
    """`objective` (the teacher's PerceptualLoss, holding the loss network) + pixel and feature
    targets from `teacher`'s output. forward(output, content, style_index=None) returns the
    objective's terms (content, style, tv; `objective` = their sum) plus `pixel`, `feature` and
    `loss`, the sum that trains."""

    def __init__(self, objective: PerceptualLoss, teacher: nn.Module, pixel_weight: float,
                 feature_weight: float, feature_layers: Mapping[str, float]):
        super().__init__()
        missing = sorted(set(feature_layers) - set(objective.encoder.layers))
        if missing:
            raise ValueError(f"distill.feature_layers {missing} are not computed by the loss network "
                             f"(its layers: {sorted(objective.encoder.layers)})")
        self.objective = objective
        self.teacher = teacher.eval().requires_grad_(False)
        self.pixel_weight, self.feature_weight = float(pixel_weight), float(feature_weight)
        self.feature_layers = {str(k): float(v) for k, v in feature_layers.items()}
        self.pixel_only = False

    @property
    def encoder(self) -> nn.Module:  # the loss network, as PerceptualLoss exposes it
        return self.objective.encoder

    def train(self, mode: bool = True) -> "Distillation":
        super().train(mode)
        self.teacher.eval()  # frozen, whatever Lightning asks of the training module
        return self

    @torch.no_grad()
    def teacher_output(self, content: torch.Tensor, style_index: torch.Tensor | None) -> torch.Tensor:
        return self.teacher(content, style_index)

    def forward(self, output: torch.Tensor, content: torch.Tensor,
                style_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        target = self.teacher_output(content, style_index).to(output.dtype)
        pixel = self.pixel_weight * F.mse_loss(output.float(), target.float())
        if self.pixel_only and self.training:
            return {"pixel": pixel, "loss": pixel}
        out_f, tgt_f = self.objective.features(output, content)
        terms = self.objective.weighted_terms(out_f, tgt_f, output, style_index)
        terms["objective"] = terms["loss"]
        terms["pixel"] = pixel
        feature = output.new_zeros((), dtype=torch.float32)
        if self.feature_weight and self.feature_layers:
            with torch.no_grad():
                teacher_f = self.objective.encoder(target, layers=self.feature_layers)
            feature = sum(w * F.mse_loss(out_f[l].float(), teacher_f[l].float())
                          for l, w in self.feature_layers.items())
        terms["feature"] = self.feature_weight * feature
        terms["loss"] = terms["objective"] + terms["pixel"] + terms["feature"]
        return terms


def load_teacher(path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, "object"]:
    """(frozen network, ExportInfo) of a teacher export; refuses kinds that cannot teach."""
    from fast_nst.kinds import load_network

    net, info = load_network(path)
    if info.kind not in DISTILLABLE_KINDS:
        raise ValueError(f"teacher={path} is a {info.kind} network; distillation takes a per-style (johnson) "
                         f"or multi-style (cin) export: {', '.join(DISTILLABLE_KINDS)}")
    return net.to(device).eval().requires_grad_(False), info
