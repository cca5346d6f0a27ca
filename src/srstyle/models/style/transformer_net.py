"""Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016,
with Instance Normalisation (Ulyanov, Vedaldi, Lempitsky 2016) in place of batch norm.

    9x9 conv (3->c) -> 3x3 stride-2 conv (c->2c) -> 3x3 stride-2 conv (2c->4c)
    -> 5 residual blocks (4c) -> upsample x2 + 3x3 conv (4c->2c) -> upsample x2 + 3x3 conv (2c->c) -> 9x9 conv (c->3)

``upsample: bilinear`` interpolates instead of repeating pixels: a nearest-neighbour x2 twice copies each
feature into a 4x4 block, and at a small training budget the 3x3 convs after it have not learned to hide
that 4-pixel grid (data/style/eval/grid_fast.png at the CPU demo's budget).
Every conv is reflection-padded; every conv but the last is followed by instance norm and ReLU. Upsampling is
nearest-neighbour then convolution rather than a transposed convolution, which avoids checkerboard
artefacts (Odena, Dumoulin, Olah, Distill 2016). With c = 32 (the paper) it has 1,679,235 parameters.
Input and output are RGB in [0, 1]; the last conv's value y becomes the image by ``output``:

* ``scaled_tanh``: 0.5 + 0.6 tanh(y), Johnson's ``150 tanh`` on a mean-subtracted 0-255 scale. Bounded (an
  untrained net cannot feed the loss network values far outside the image, whose Gram matrices would be
  orders of magnitude off), yet black and white lie where the slope is still 0.31;
* ``linear``: 0.5 + y (pytorch/examples), unbounded while training;
* ``tanh``: the earlier (tanh(y) + 1) / 2: black and white only where the tanh saturates and the gradient
  vanishes, so a unit that went dark stayed dark (the dark droplets of issue 19); kept for files trained with it.

In eval mode (inference, export) every kind is clamped to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import STYLE_NETS

OUTPUTS = ("scaled_tanh", "linear", "tanh")
SCALED_TANH_RANGE = 0.6   # Johnson's 150 / 255: black and white at |tanh| = 0.83, where the slope is still 0.31


def image_output(y: Tensor, kind: str, training: bool) -> Tensor:
    """The last conv's values as an RGB image in [0, 1] (see the module docstring for the kinds)."""
    if kind == "tanh":
        return (torch.tanh(y) + 1) / 2
    y = 0.5 + (SCALED_TANH_RANGE * torch.tanh(y) if kind == "scaled_tanh" else y)  # mid-grey at y = 0
    return y if training else y.clamp(0.0, 1.0)


class ConvLayer(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1,
                 norm: bool = True, relu: bool = True, mode: str = "nearest", pool: bool = False):
        layers: list[nn.Module] = []
        if pool and stride > 1:  # average-pool then a stride-1 conv: every input pixel weighs the same
            layers.append(nn.AvgPool2d(stride))
            stride = 1
        if upsample > 1:
            layers.append(nn.Upsample(scale_factor=upsample, mode=mode,
                                      align_corners=False if mode == "bilinear" else None))
        layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))), no ReLU after the sum (Gross and Wilber's variant, used by Johnson)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@STYLE_NETS.register("transformer_net")
class TransformerNet(nn.Module):
    input_kind, color = "content", "rgb"

    def __init__(self, channels: int = 32, residual_blocks: int = 5, upsample: str = "nearest",
                 downsample: str = "stride", output: str = "tanh"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        if downsample not in ("stride", "avgpool"):
            raise ValueError(f"downsample must be 'stride' or 'avgpool', got {downsample!r}")
        c, pool = channels, downsample == "avgpool"
        self.encoder = nn.Sequential(ConvLayer(3, c, 9), ConvLayer(c, 2 * c, 3, stride=2, pool=pool),
                                     ConvLayer(2 * c, 4 * c, 3, stride=2, pool=pool))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(residual_blocks)])
        self.decoder = nn.Sequential(
            ConvLayer(4 * c, 2 * c, 3, upsample=2, mode=upsample), ConvLayer(2 * c, c, 3, upsample=2, mode=upsample),
            ConvLayer(c, 3, 9, norm=False, relu=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        # Two stride-2 convs: pad to a multiple of 4 so the output has the input's size, then crop back.
        x = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="reflect")
        y = self.decoder(self.residuals(self.encoder(x)))[..., :h, :w]
        return image_output(y, self.output, self.training)
