"""DRCN: Kim, Lee, Lee, "Deeply-Recursive Convolutional Network for Image Super-Resolution", CVPR 2016.

Embedding net (two 3x3 convs -> F, ReLU) turns the bicubic-upscaled Y into features H0; one 3x3 conv with
*shared weights* is applied D times (H_d = relu(W * H_{d-1} + b)); the shared reconstruction net (3x3 conv
F -> F, ReLU, 3x3 conv -> 1) turns every H_d into a prediction y_d = x + recon(H_d) (skip connection).
The output is the learned weighted average of the D predictions ("ensemble").  Training uses recursive
supervision:  loss = alpha * mean_d l(y_d, y) + (1 - alpha) * l(sum_d w_d y_d, y).  Paper: F=256, D=16.
Choice: the ensemble weights are normalised with a softmax over learned logits, so they stay positive and
sum to one (the paper leaves them free); alpha starts at 1 and decays (``alpha`` is the trainer's value).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..registry import MODELS


@MODELS.register("drcn")
class DRCN(nn.Module):
    input_kind = "bicubic"
    color = "y"

    def __init__(self, scale: int = 3, in_channels: int = 1, channels: int = 256, recursions: int = 16, alpha: float = 0.5):
        super().__init__()
        self.scale, self.recursions, self.alpha = scale, recursions, alpha
        self.embedding = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.recursive = nn.Conv2d(channels, channels, 3, padding=1)
        self.reconstruction = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, in_channels, 3, padding=1)
        )
        self.ensemble_logits = nn.Parameter(torch.zeros(recursions))

    def predictions(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.embedding(x)
        outs = []
        for _ in range(self.recursions):
            h = torch.relu(self.recursive(h))
            outs.append(x + self.reconstruction(h))
        weights = torch.softmax(self.ensemble_logits, dim=0)
        final = torch.stack(outs, dim=0).mul(weights.view(-1, 1, 1, 1, 1)).sum(dim=0)
        return final, outs

    def forward(self, x: Tensor) -> Tensor:
        return self.predictions(x)[0]

    def training_loss(self, x: Tensor, target: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """Recursive supervision: every intermediate prediction is supervised, plus the ensemble."""
        final, outs = self.predictions(x)
        intermediate = torch.stack([loss_fn(o, target) for o in outs]).mean()
        return self.alpha * intermediate + (1 - self.alpha) * loss_fn(final, target)
