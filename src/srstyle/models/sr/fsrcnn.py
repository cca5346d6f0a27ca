"""FSRCNN: Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural Network", ECCV 2016.

Works on the LR Y channel and upsamples only at the end with a learned deconvolution:
feature extraction 5x5 conv -> d, PReLU; shrinking 1x1 -> s, PReLU; m mapping layers 3x3 s -> s, PReLU;
expanding 1x1 -> d, PReLU; deconvolution 9x9 with stride = scale.  Default FSRCNN(d=56, s=12, m=4).
Choice: padding 4 and output_padding = scale - 1 make the output exactly ``scale`` times the input.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import MODELS


def _conv_prelu(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.PReLU(cout)]


@MODELS.register("fsrcnn")
class FSRCNN(nn.Module):
    input_kind = "lr"
    color = "y"

    def __init__(self, scale: int = 3, in_channels: int = 1, d: int = 56, s: int = 12, m: int = 4):
        super().__init__()
        self.scale = scale
        layers = _conv_prelu(in_channels, d, 5) + _conv_prelu(d, s, 1)
        for _ in range(m):
            layers += _conv_prelu(s, s, 3)
        layers += _conv_prelu(s, d, 1)
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, in_channels, 9, stride=scale, padding=4, output_padding=scale - 1)
        # The paper initialises the deconvolution from a zero-mean Gaussian with std 0.001.
        nn.init.normal_(self.deconv.weight, std=0.001)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv(self.body(x))
