"""SRResNet: the generator of Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a
Generative Adversarial Network", CVPR 2017 (SRGAN).

9x9 conv RGB -> 64, PReLU;  16 residual blocks (conv3x3-BN-PReLU-conv3x3-BN, + skip);  conv3x3-BN plus a
long skip;  sub-pixel upsampling (conv -> 256, shuffle x2, PReLU per factor 2; one shuffle x3 for x3);
9x9 conv -> RGB.  About 1.5M parameters at x4.  Trained alone with MSE it is SRResNet; it is also SRGAN's
generator (pre-trained with MSE, then adversarial training).
Choice: input and output RGB in [0, 1] without a final tanh (the paper maps HR to [-1, 1] with tanh).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import MODELS
from .common import pixel_shuffle_upsampler


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@MODELS.register("srresnet")
class SRResNet(nn.Module):
    input_kind = "lr"
    color = "rgb"

    def __init__(self, scale: int = 4, blocks: int = 16, channels: int = 64, residual: str = "none"):
        """``residual: bicubic`` (not in the paper; off by default): predict the difference to a bicubic
        upscale, starting from it (zero last conv), as the small-CPU demo's EDSR does (see edsr.py)."""
        super().__init__()
        if residual not in ("none", "bicubic"):
            raise ValueError(f"residual must be 'none' or 'bicubic', got {residual!r}")
        self.scale, self.residual = scale, residual
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.upsample = pixel_shuffle_upsampler(scale, channels, activation=nn.PReLU(channels))
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)
        if residual == "bicubic":
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.head(x)
        out = self.tail(self.upsample(h + self.body(h)))
        if self.residual == "bicubic":
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out
