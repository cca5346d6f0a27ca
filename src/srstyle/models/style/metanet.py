"""Shen, Yan, Zeng, "Neural Style Transfer via Meta Networks", CVPR 2018.

A meta network maps a style image's description (the channel mean and standard deviation of its VGG features
at relu1_2, relu2_2, relu3_3, relu4_3: 2 x (64+128+256+512) = 1920 numbers) to all the convolution weights
of a small image-transformation network, in one forward pass; new styles need no training.

    stats (1920) -> log1p -> LayerNorm -> Linear(1920, hidden * L) -> ReLU -> split into L groups
    group l (hidden) -> Linear(hidden, |theta_l|) = weights and bias of transformer conv l

The generated transformer has Johnson's shape at base width ``base`` (the paper's small configuration uses 8):
9x9 conv, two stride-2 convs, five residual blocks, two upsample+conv, 9x9 conv; instance norm without affine
parameters (everything learnable is generated). ``GeneratedTransformer.forward(x, theta)`` takes the flat
weight vector, so a style is applied with plain convolutions and the pair exports to ONNX as two graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import STYLE_NETS

META_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
META_TAP_CHANNELS = (64, 128, 256, 512)


@dataclass(frozen=True)
class ConvSpec:
    name: str
    cin: int
    cout: int
    kernel: int
    stride: int = 1
    upsample: int = 1
    norm: bool = True
    relu: bool = True

    @property
    def numel(self) -> int:
        return self.cout * self.cin * self.kernel * self.kernel + self.cout


def transformer_specs(base: int, residual_blocks: int = 5) -> list[ConvSpec]:
    b = base
    specs = [ConvSpec("enc1", 3, b, 9), ConvSpec("enc2", b, 2 * b, 3, 2), ConvSpec("enc3", 2 * b, 4 * b, 3, 2)]
    for i in range(residual_blocks):
        specs += [ConvSpec(f"res{i}a", 4 * b, 4 * b, 3), ConvSpec(f"res{i}b", 4 * b, 4 * b, 3, relu=False)]
    specs += [ConvSpec("dec1", 4 * b, 2 * b, 3, upsample=2), ConvSpec("dec2", 2 * b, b, 3, upsample=2),
              ConvSpec("dec3", b, 3, 9, norm=False, relu=False)]
    return specs


class GeneratedTransformer(nn.Module):
    """The image-transformation network whose weights come from outside, as one flat vector ``theta``."""

    input_kind, color = "content", "rgb"

    def __init__(self, base: int = 8, residual_blocks: int = 5):
        super().__init__()
        self.specs = transformer_specs(base, residual_blocks)
        self.residual_blocks = residual_blocks
        self.sizes = [s.numel for s in self.specs]
        self.num_weights = sum(self.sizes)

    def split(self, theta: Tensor) -> list[tuple[Tensor, Tensor]]:
        out, offset = [], 0
        for s in self.specs:
            w = theta[offset: offset + s.cout * s.cin * s.kernel * s.kernel].reshape(s.cout, s.cin, s.kernel, s.kernel)
            offset += w.numel()
            out.append((w, theta[offset: offset + s.cout]))
            offset += s.cout
        return out

    @staticmethod
    def _conv(x: Tensor, spec: ConvSpec, weight: Tensor, bias: Tensor) -> Tensor:
        if spec.upsample > 1:
            x = F.interpolate(x, scale_factor=float(spec.upsample), mode="nearest")
        p = spec.kernel // 2
        x = F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), weight, bias, stride=spec.stride)
        if spec.norm:
            x = F.instance_norm(x)
        return F.relu(x) if spec.relu else x

    def forward(self, x: Tensor, theta: Tensor) -> Tensor:
        """x: (N, 3, H, W) RGB in [0, 1]; theta: (num_weights,) one style's generated weights."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="reflect")
        layers = list(zip(self.specs, self.split(theta.reshape(-1))))
        for spec, (wt, b) in layers[:3]:
            x = self._conv(x, spec, wt, b)
        for i in range(self.residual_blocks):
            (sa, (wa, ba)), (sb, (wb, bb)) = layers[3 + 2 * i], layers[4 + 2 * i]
            x = x + self._conv(self._conv(x, sa, wa, ba), sb, wb, bb)
        for spec, (wt, b) in layers[3 + 2 * self.residual_blocks:]:
            x = self._conv(x, spec, wt, b)
        return (torch.tanh(x[..., :h, :w]) + 1) / 2  # bounded like Johnson's output layer

    def initial_theta(self, generator: torch.Generator | None = None) -> Tensor:
        """Weights as PyTorch's default conv initialisation would draw them (kaiming-uniform, a=sqrt(5))."""
        parts = []
        for s in self.specs:
            fan_in = s.cin * s.kernel * s.kernel
            bound = 1 / math.sqrt(fan_in)  # = gain(a=sqrt 5) * sqrt(3 / fan_in)
            parts += [torch.empty(s.cout * fan_in).uniform_(-bound, bound, generator=generator),
                      torch.empty(s.cout).uniform_(-bound, bound, generator=generator)]
        return torch.cat(parts)


@STYLE_NETS.register("metanet")
class MetaNet(nn.Module):
    """style statistics (N, 1920) -> generated transformer weights (N, num_weights)."""

    input_kind, color = "style_stats", "rgb"

    def __init__(self, base: int = 8, hidden: int = 128, residual_blocks: int = 5,
                 tap_channels: tuple[int, ...] = META_TAP_CHANNELS, head_init_scale: float = 0.01):
        super().__init__()
        self.transformer = GeneratedTransformer(base, residual_blocks)
        self.in_features = 2 * sum(tap_channels)
        self.norm = nn.LayerNorm(self.in_features)
        groups = len(self.transformer.specs)
        self.hidden = nn.Linear(self.in_features, hidden * groups)
        self.hidden_size = hidden
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.transformer.sizes)
        # Start from an ordinary randomly initialised transformer (the heads' biases) that the style input
        # perturbs a little, so early training sees sane activations whatever the style statistics.
        theta0 = self.transformer.initial_theta(torch.Generator().manual_seed(0))
        offset = 0
        with torch.no_grad():
            for head, n in zip(self.heads, self.transformer.sizes):
                head.bias.copy_(theta0[offset: offset + n])
                head.weight.mul_(head_init_scale)
                offset += n

    def forward(self, stats: Tensor) -> Tensor:
        h = F.relu(self.hidden(self.norm(torch.log1p(stats))))
        groups = h.split(self.hidden_size, dim=1)
        return torch.cat([head(g) for head, g in zip(self.heads, groups)], dim=1)

    def stylize(self, content: Tensor, stats: Tensor) -> Tensor:
        return self.transformer(content, self.forward(stats)[0])


def style_statistics(features: dict[str, Tensor], taps: tuple[str, ...] = META_TAPS) -> Tensor:
    """(N, 2 * sum C): per-channel mean then std of each tap, in tap order."""
    from ...losses import channel_stats

    parts = []
    for t in taps:
        mean, std = channel_stats(features[t])
        parts += [mean, std]
    return torch.cat(parts, dim=1)
