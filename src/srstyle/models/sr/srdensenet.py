"""SRDenseNet: Tong, Li, Liu, Gao, "Image Super-Resolution Using Dense Skip Connections", ICCV 2017.

The "all-level" variant: a 3x3 conv (LR Y -> 128 features, ReLU), then 8 dense blocks of 8 conv layers with
growth rate 16 (each layer sees the concatenation of the block input and every earlier layer's output; a
block outputs its 8 x 16 = 128 new maps).  The low-level features and every block's output are concatenated
(9 x 128 = 1152 maps), reduced to 256 by a 1x1 bottleneck, upsampled by deconvolutions (3x3, 256 maps, ReLU)
and reconstructed by a 3x3 conv -> Y.
Choice: the paper is x4 (two stride-2 deconvolutions); x2 uses one, x3 one stride-3 deconvolution (ours).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import MODELS


class DenseBlock(nn.Module):
    def __init__(self, in_channels: int, growth: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels + i * growth, growth, 3, padding=1), nn.ReLU(inplace=True))
            for i in range(layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        features, new = [x], []
        for layer in self.layers:
            out = layer(torch.cat(features, dim=1))
            features.append(out)
            new.append(out)
        return torch.cat(new, dim=1)


def _deconvs(scale: int, channels: int) -> list[nn.Module]:
    steps = {2: [2], 3: [3], 4: [2, 2], 8: [2, 2, 2]}
    if scale not in steps:
        raise ValueError(f"SRDenseNet supports scales 2, 3, 4, 8; got {scale}")
    layers: list[nn.Module] = []
    for s in steps[scale]:
        pad = 1 if s == 2 else 0  # 3x3 kernel: (H-1)s - 2p + 3 + op = sH
        layers += [nn.ConvTranspose2d(channels, channels, 3, stride=s, padding=pad, output_padding=pad), nn.ReLU(inplace=True)]
    return layers


@MODELS.register("srdensenet")
class SRDenseNet(nn.Module):
    input_kind = "lr"
    color = "y"

    def __init__(self, scale: int = 4, in_channels: int = 1, blocks: int = 8, layers: int = 8, growth: int = 16,
                 bottleneck: int = 256):
        super().__init__()
        self.scale = scale
        width = layers * growth
        self.low = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList(DenseBlock(width, growth, layers) for _ in range(blocks))
        self.bottleneck = nn.Sequential(nn.Conv2d(width * (blocks + 1), bottleneck, 1), nn.ReLU(inplace=True))
        self.upsample = nn.Sequential(*_deconvs(scale, bottleneck))
        self.reconstruction = nn.Conv2d(bottleneck, in_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.low(x)
        levels = [h]
        for block in self.blocks:
            h = block(h)
            levels.append(h)
        return self.reconstruction(self.upsample(self.bottleneck(torch.cat(levels, dim=1))))
