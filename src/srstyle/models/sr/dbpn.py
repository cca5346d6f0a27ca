"""D-DBPN: Haris, Shakhnarovich, Ukita, "Deep Back-Projection Networks for Super-Resolution", CVPR 2018.

Iterative up- and down-projection units with error feedback, densely connected:
  up:   H0 = deconv(L);  L0 = conv(H0);  H1 = deconv(L0 - L);  H = H0 + H1
  down: L0 = conv(H);   H0 = deconv(L0); L1 = conv(H0 - H);   L = L0 + L1
Every unit after the first takes the concatenation of all earlier outputs of the other kind, reduced by a
1x1 conv.  Initial features: 3x3 conv -> n0 (256), 1x1 conv -> nr (64); reconstruction: 3x3 conv over the
concatenated HR maps of all T up-projections.  All activations PReLU.  Paper D-DBPN: T=7 (x2/x4/x8).
Projection kernel/stride/padding per scale as in the paper: x2 6/2/2, x4 8/4/2, x8 12/8/2.
Choice: x3 (not in the paper) uses 7/3/2, which keeps the output exactly 3x the input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import MODELS

PROJECTION = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


def _conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.PReLU(cout))


def _deconv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p), nn.PReLU(cout))


class UpProjection(nn.Module):
    def __init__(self, channels: int, kernel: tuple[int, int, int], inputs: int = 1):
        super().__init__()
        self.reduce = _conv(channels * inputs, channels, 1, 1, 0) if inputs > 1 else nn.Identity()
        self.up1, self.down, self.up2 = _deconv(channels, channels, *kernel), _conv(channels, channels, *kernel), _deconv(channels, channels, *kernel)

    def forward(self, low: Tensor) -> Tensor:
        low = self.reduce(low)
        h0 = self.up1(low)
        return h0 + self.up2(self.down(h0) - low)


class DownProjection(nn.Module):
    def __init__(self, channels: int, kernel: tuple[int, int, int], inputs: int = 1):
        super().__init__()
        self.reduce = _conv(channels * inputs, channels, 1, 1, 0) if inputs > 1 else nn.Identity()
        self.down1, self.up, self.down2 = _conv(channels, channels, *kernel), _deconv(channels, channels, *kernel), _conv(channels, channels, *kernel)

    def forward(self, high: Tensor) -> Tensor:
        high = self.reduce(high)
        l0 = self.down1(high)
        return l0 + self.down2(self.up(l0) - high)


@MODELS.register("dbpn")
class DBPN(nn.Module):
    input_kind = "lr"
    color = "rgb"

    def __init__(self, scale: int = 4, stages: int = 7, features: int = 256, channels: int = 64):
        super().__init__()
        if scale not in PROJECTION:
            raise ValueError(f"DBPN supports scales {sorted(PROJECTION)}; got {scale}")
        kernel = PROJECTION[scale]
        self.scale = scale
        self.initial = nn.Sequential(_conv(3, features, 3, 1, 1), _conv(features, channels, 1, 1, 0))
        self.ups = nn.ModuleList(UpProjection(channels, kernel, inputs=t) for t in range(1, stages + 1))
        self.downs = nn.ModuleList(DownProjection(channels, kernel, inputs=t) for t in range(1, stages))
        self.reconstruction = nn.Conv2d(channels * stages, 3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        lows = [self.initial(x)]
        highs: list[Tensor] = []
        for t, up in enumerate(self.ups):
            highs.append(up(torch.cat(lows, dim=1)))
            if t < len(self.downs):
                lows.append(self.downs[t](torch.cat(highs, dim=1)))
        return self.reconstruction(torch.cat(highs, dim=1))
