"""SRGAN's discriminator (Ledig et al. 2017, Fig. 4).

Eight 3x3 conv layers, 64 -> 512 channels, doubling every two layers, stride 2 on every second layer;
LeakyReLU(0.2) throughout; batch norm on all but the first conv; then dense 1024, LeakyReLU, dense 1.
The paper ends with a sigmoid; this module returns the logit and the losses apply the sigmoid inside
``binary_cross_entropy_with_logits`` (the same function, numerically stable). ``patch_size`` is the HR patch
side it is trained on (96 in the paper): the dense layer sees the (patch_size / 16)^2 x 512 feature map.
"""

from __future__ import annotations

from torch import Tensor, nn


class SRGANDiscriminator(nn.Module):
    def __init__(self, patch_size: int = 96, in_channels: int = 3, base: int = 64):
        super().__init__()
        if patch_size % 16:
            raise ValueError(f"discriminator patch_size must be a multiple of 16, got {patch_size}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        cin = base
        specs = [(base, 2), (base * 2, 1), (base * 2, 2), (base * 4, 1), (base * 4, 2), (base * 8, 1), (base * 8, 2)]
        for cout, stride in specs:
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        side = patch_size // 16
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * side * side, 1024), nn.LeakyReLU(0.2, inplace=True), nn.Linear(1024, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x)).squeeze(1)
