"""SRCNN: Dong, Loy, He, Tang, "Learning a Deep Convolutional Network for Image Super-Resolution", ECCV 2014.

Input is the bicubic-upscaled Y channel; three convolutions do patch extraction, non-linear mapping and
reconstruction:  f1 x f1 conv -> n1, ReLU;  f2 x f2 conv -> n2, ReLU;  f3 x f3 conv -> 1.
Default 9-1-5 with n1=64, n2=32 (8,129 parameters); ``kernels=(9, 5, 5)`` gives the 9-5-5 variant.
Choice: the paper trains without padding (output smaller than input); we zero-pad ("same") so the output
is aligned with the input for any size, which is what evaluation and ONNX export need.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import MODELS


@MODELS.register("srcnn")
class SRCNN(nn.Module):
    input_kind = "bicubic"
    color = "y"

    def __init__(self, scale: int = 3, in_channels: int = 1, channels: tuple[int, int] | list[int] = (64, 32),
                 kernels: tuple[int, int, int] | list[int] = (9, 1, 5)):
        super().__init__()
        (n1, n2), (f1, f2, f3) = channels, kernels
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, n1, f1, padding=f1 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n1, n2, f2, padding=f2 // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n2, in_channels, f3, padding=f3 // 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)
