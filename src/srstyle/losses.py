"""Losses: pixel (MSE/L1), VGG perceptual (SRGAN's content loss) and the adversarial pair.

The perceptual loss follows Ledig et al.: MSE between VGG19 feature maps phi_{i,j} of the SR and HR images,
where VGG22 = relu2_2 and VGG54 = relu5_4 (after activation, before the next pooling), rescaled by 1/12.75
as in the paper's implementation so it has the same order as the pixel MSE on [0, 1] images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.backbones import VGG19Features
from .models.registry import Registry

LOSSES = Registry("loss")
CONTENT_TAPS = {"vgg22": "relu2_2", "vgg54": "relu5_4"}


def _y_to_rgb(x: Tensor) -> Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@LOSSES.register("mse")
class PixelMSE(nn.Module):
    input_kind = color = "any"

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return F.mse_loss(sr, hr)


@LOSSES.register("l1")
class PixelL1(nn.Module):
    input_kind = color = "any"

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return F.l1_loss(sr, hr)


class PerceptualLoss(nn.Module):
    """MSE between VGG19 activations at one tap (SRGAN's VGG22 / VGG54 content loss)."""

    def __init__(self, tap: str = "relu5_4", weights: str | None = None, allow_random_init: bool = False, rescale: float = 1 / 12.75):
        super().__init__()
        self.tap = tap
        self.vgg = VGG19Features([tap], weights=weights, allow_random_init=allow_random_init)
        self.rescale = rescale

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        a = self.vgg(_y_to_rgb(sr))[self.tap]
        with torch.no_grad():
            b = self.vgg(_y_to_rgb(hr))[self.tap]
        return F.mse_loss(a * self.rescale, b * self.rescale)


def content_loss(kind: str, weights: str | None = None, allow_random_init: bool = False) -> nn.Module:
    """SRGAN content loss by name: ``mse``, ``vgg22`` or ``vgg54``."""
    if kind == "mse":
        return PixelMSE()
    if kind in CONTENT_TAPS:
        return PerceptualLoss(CONTENT_TAPS[kind], weights=weights, allow_random_init=allow_random_init)
    raise ValueError(f"content loss must be one of mse, vgg22, vgg54; got {kind!r}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z))), computed on logits for numerical stability."""
    return F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """-log D(G(z)) (the non-saturating form the SRGAN paper uses)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
