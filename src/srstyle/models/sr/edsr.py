"""EDSR: Lim, Son, Kim, Nah, Lee, "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPRW 2017.

SRResNet without batch normalisation, with residual scaling:  block(x) = x + res_scale * conv(relu(conv(x))).
head: 3x3 conv RGB -> F;  body: B blocks + 3x3 conv, plus a long skip from the head;  tail: sub-pixel
upsampler (x2, x3, x4) + 3x3 conv -> RGB.  The DIV2K RGB mean is subtracted at the input and added back at
the output (MeanShift).  Trained with L1 loss.  Configurations:
  baseline: B=16, F=64, res_scale=1   -> 1.37M (x2) / 1.55M (x3) / 1.52M (x4) parameters
  paper:    B=32, F=256, res_scale=0.1 -> 40.7M (x2) / 43.7M (x3) / 43.1M (x4) parameters
Choice: inputs are RGB in [0, 1] (the authors use [0, 255]); the mean shift is scaled accordingly.
Option ``residual: bicubic`` (not in the paper; off by default): the network predicts the difference to a
bicubic upscale of its input and its last conv starts at zero, so it starts *at* bicubic and every step of
training can only add detail. The small-CPU demo uses it: a two-minute budget on 2 shared cores is tens to
hundreds of steps, too few for the plain network to reach bicubic from a random start.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import MODELS
from .common import MeanShift, pixel_shuffle_upsampler

CONFIGS = {"baseline": (16, 64, 1.0), "paper": (32, 256, 0.1)}


class ResBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1)
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


@MODELS.register("edsr")
class EDSR(nn.Module):
    input_kind = "lr"
    color = "rgb"

    def __init__(self, scale: int = 4, config: str = "baseline", blocks: int | None = None,
                 channels: int | None = None, res_scale: float | None = None, residual: str = "none"):
        super().__init__()
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
        if residual not in ("none", "bicubic"):
            raise ValueError(f"residual must be 'none' or 'bicubic', got {residual!r}")
        self.residual = residual
        b, f, r = CONFIGS[config]
        b, f, r = blocks or b, channels or f, r if res_scale is None else res_scale
        self.scale = scale
        self.sub_mean, self.add_mean = MeanShift(sign=-1), MeanShift(sign=+1)
        self.head = nn.Conv2d(3, f, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(f, r) for _ in range(b)], nn.Conv2d(f, f, 3, padding=1))
        self.tail = nn.Sequential(pixel_shuffle_upsampler(scale, f), nn.Conv2d(f, 3, 3, padding=1))
        if residual == "bicubic":
            nn.init.zeros_(self.tail[-1].weight)
            nn.init.zeros_(self.tail[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(self.sub_mean(x))
        out = self.tail(h + self.body(h))
        if self.residual == "bicubic":
            return out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.add_mean(out)
