"""ESPCN: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016.

All convolutions run at LR resolution; the last one predicts ``scale**2`` channels per output channel and
the periodic shuffle (PixelShuffle) rearranges them into the HR grid:

    f1 = 5x5 conv -> 64, act;  f2 = 3x3 conv -> 32, act;  f3 = 3x3 conv -> C*r^2;  PixelShuffle(r)

The paper uses tanh; ReLU is offered as an option. Padding keeps the LR size, so the output is exactly
``scale`` times the input for any height and width.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import MODELS

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@MODELS.register("espcn")
class ESPCN(nn.Module):
    input_kind = "lr"
    color = "y"

    def __init__(
        self,
        scale: int = 3,
        in_channels: int = 1,
        channels: tuple[int, int] | list[int] = (64, 32),
        kernels: tuple[int, int, int] | list[int] = (5, 3, 3),
        activation: str = "tanh",
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if len(channels) != 2 or len(kernels) != 3 or any(k % 2 == 0 for k in kernels):
            raise ValueError("ESPCN needs two hidden widths and three odd kernel sizes")
        act = _ACTIVATIONS[activation]
        c1, c2 = channels
        k1, k2, k3 = kernels
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c1, k1, padding=k1 // 2),
            act(),
            nn.Conv2d(c1, c2, k2, padding=k2 // 2),
            act(),
            nn.Conv2d(c2, in_channels * scale**2, k3, padding=k3 // 2),
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.body(x))
