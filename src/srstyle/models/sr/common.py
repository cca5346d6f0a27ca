"""Building blocks shared by several SR architectures."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# DIV2K RGB mean (EDSR's MeanShift), on the [0, 1] scale.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Subtract (sign=-1) or add (sign=+1) a fixed RGB mean; a buffer, not a trainable layer."""

    def __init__(self, mean: tuple[float, float, float] = DIV2K_RGB_MEAN, sign: int = -1):
        super().__init__()
        self.register_buffer("shift", sign * torch.tensor(mean).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.shift


def pixel_shuffle_upsampler(scale: int, channels: int, activation: nn.Module | None = None) -> nn.Sequential:
    """Sub-pixel upsampling: x2/x4/x8 as repeated (conv -> 4C, shuffle 2), x3 as one (conv -> 9C, shuffle 3)."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
            if activation is not None:
                layers.append(activation)
    elif scale == 3:
        layers += [nn.Conv2d(channels, 9 * channels, 3, padding=1), nn.PixelShuffle(3)]
        if activation is not None:
            layers.append(activation)
    else:
        raise ValueError(f"pixel-shuffle upsampling supports scales 2, 3, 4, 8; got {scale}")
    return nn.Sequential(*layers)
