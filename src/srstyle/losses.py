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

CONTENT_TAPS = {"vgg22": "relu2_2", "vgg54": "relu5_4"}


def _y_to_rgb(x: Tensor) -> Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class PixelMSE(nn.Module):
    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return F.mse_loss(sr, hr)


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


# --- Style transfer: Gram matrices, content/style/total-variation losses ------------------------------------


def gram_matrix(features: Tensor) -> Tensor:
    """G_ij = sum_k F_ik F_jk / (C H W) over the flattened positions k (Gatys et al.; Johnson's normalisation).

    Always float32, also under bf16/fp16 autocast: a sum over H*W products needs float32's mantissa (in bf16
    the style loss of two near-equal Gram matrices would be rounding noise)."""
    b, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        flat = features.float().reshape(b, c, h * w)
        return flat @ flat.transpose(1, 2) / (c * h * w)


def channel_stats(features: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over positions (the Meta-Network's style description)."""
    flat = features.flatten(2)
    return flat.mean(2), (flat.var(2, unbiased=False) + eps).sqrt()


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation: absolute differences of vertical and horizontal neighbours, per pixel."""
    return ((x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum()) / x.numel()


class StyleTransferLoss(nn.Module):
    """weighted content + style + total-variation loss measured by a frozen backbone.

    content = mean squared difference of the features at ``content_tap``;
    style   = sum_l w_l * mean squared difference of the Gram matrices at ``style_taps`` (w_l from
              ``style_layer_weights``, default equal), against the Gram matrices of one style image;
    tv      = total_variation of the output.
    Images are RGB in [0, 1]. ``set_style`` caches the style targets once; a batch of outputs may also be
    given per-sample targets (``style_grams``) as the meta network's training does.
    """

    def __init__(self, backbone: nn.Module, content_tap: str, style_taps: list[str], content_weight: float = 1.0,
                 style_weight: float = 1.0, tv_weight: float = 0.0, style_layer_weights: list[float] | None = None):
        super().__init__()
        self.backbone = backbone
        self.content_tap, self.style_taps = content_tap, list(style_taps)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        weights = style_layer_weights or [1.0 / len(style_taps)] * len(style_taps)
        if len(weights) != len(style_taps):
            raise ValueError(f"style_layer_weights has {len(weights)} entries for {len(style_taps)} style taps")
        self.layer_weights = dict(zip(self.style_taps, weights))
        self.targets: dict[str, Tensor] | None = None

    @torch.no_grad()
    def style_grams(self, style_rgb01: Tensor) -> dict[str, Tensor]:
        feats = self.backbone(style_rgb01)
        return {t: gram_matrix(feats[t]) for t in self.style_taps}

    def set_style(self, style_rgb01: Tensor) -> None:
        self.targets = self.style_grams(style_rgb01)

    @torch.no_grad()
    def content_features(self, content_rgb01: Tensor) -> Tensor:
        return self.backbone(content_rgb01)[self.content_tap]

    def style_term(self, feats: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        return sum(
            w * F.mse_loss(gram_matrix(feats[t]), targets[t].expand(feats[t].shape[0], -1, -1))
            for t, w in self.layer_weights.items()
        )

    def forward(self, output: Tensor, content: Tensor | None = None, content_features: Tensor | None = None,
                style_grams: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        targets = style_grams if style_grams is not None else self.targets
        if targets is None:
            raise RuntimeError("StyleTransferLoss: call set_style(style_image) or pass style_grams")
        feats = self.backbone(output)
        if content_features is None and content is not None:
            content_features = self.content_features(content)
        zero = output.new_zeros(())
        content_loss = F.mse_loss(feats[self.content_tap], content_features) if content_features is not None else zero
        style_loss = self.style_term(feats, targets)
        tv = total_variation(output) if self.tv_weight else zero
        total = self.content_weight * content_loss + self.style_weight * style_loss + self.tv_weight * tv
        return {"total": total, "content": content_loss, "style": style_loss, "tv": tv}
