"""VDSR: Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional Networks", CVPR 2016.

Twenty 3x3 convolutions with 64 channels (ReLU between them) predict the residual between the
bicubic-upscaled input and the HR image:  y = x + f(x).  The paper trains with a high learning rate (0.1,
SGD) made stable by adjustable gradient clipping; the trainer's ``grad_clip`` setting provides it.
About 0.67M parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import MODELS


@MODELS.register("vdsr")
class VDSR(nn.Module):
    input_kind = "bicubic"
    color = "y"

    def __init__(self, scale: int = 3, in_channels: int = 1, depth: int = 20, channels: int = 64):
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, in_channels, 3, padding=1))
        self.residual = nn.Sequential(*layers)
        for m in self.modules():  # He initialisation, as in the paper
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)
