"""Shen, Yan, Zeng, "Neural Style Transfer via Meta Networks", CVPR 2018.

A meta network maps a style image's description (the channel mean and standard deviation of its VGG features
at relu1_2, relu2_2, relu3_3, relu4_3: 2 x (64+128+256+512) = 1920 numbers) to the weights of a small
image-transformation network, in one forward pass; new styles need no training.

    stats (1920), centred and scaled -> Linear(1920, hidden * L) -> ReLU -> split into L groups
    group l (hidden) -> Linear(hidden, |theta_l|) = conv weights and instance-norm scale/shift of layer l
    (both linear layers with equalised learning rates: ``ScaledLinear``)

The transformer has Johnson's shape at base width ``base`` (the paper's small configuration uses 8): 9x9 conv,
two stride-2 convs, five residual blocks, two upsample+conv, 9x9 conv. As in the paper's network, the first
and last 9x9 convolutions are ordinary parameters shared by every style (they map RGB to features and back);
the middle ones (L = 2 + 10 + 2 = 14) are generated. A generated conv has no bias (the instance norm after it
removes any bias) and gets the norm's scale and shift instead: per-style normalisation statistics are what
conditional instance norm (Dumoulin et al. 2017) showed carry most of a style.

The input statistics differ by orders of magnitude between taps (relu4_3's are ~100x relu1_2's with the Caffe
VGG) and are nearly the same positive vector for every painting: they are centred on the training paintings'
mean and each tap's means and stds divided by one constant (their spread over the training paintings; both
buffers), so the hidden layer sees what tells paintings apart at order 1. The earlier log1p + LayerNorm input
flattened those differences: the generated weights of seven paintings differed by 2-5% of their norm. ``GeneratedTransformer.forward(x, theta)`` takes the
flat generated vector, so a style is applied with plain convolutions and the pair exports to ONNX as two graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import STYLE_NETS
from .transformer_net import image_output

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
    def weight_numel(self) -> int:
        return self.cout * self.cin * self.kernel * self.kernel

    @property
    def numel(self) -> int:
        """Generated numbers: the conv weight, then the instance norm's scale and shift."""
        return self.weight_numel + 2 * self.cout


def transformer_specs(base: int, residual_blocks: int = 5) -> list[ConvSpec]:
    """The generated (middle) convolutions, in order."""
    b = base
    specs = [ConvSpec("enc2", b, 2 * b, 3, 2), ConvSpec("enc3", 2 * b, 4 * b, 3, 2)]
    for i in range(residual_blocks):
        specs += [ConvSpec(f"res{i}a", 4 * b, 4 * b, 3), ConvSpec(f"res{i}b", 4 * b, 4 * b, 3, relu=False)]
    specs += [ConvSpec("dec1", 4 * b, 2 * b, 3, upsample=2), ConvSpec("dec2", 2 * b, b, 3, upsample=2)]
    return specs


class GeneratedTransformer(nn.Module):
    """Johnson's transformer whose middle convolutions come from outside, as one flat vector ``theta``."""

    input_kind, color = "content", "rgb"

    def __init__(self, base: int = 8, residual_blocks: int = 5, output: str = "scaled_tanh"):
        super().__init__()
        self.specs = transformer_specs(base, residual_blocks)
        self.residual_blocks, self.output = residual_blocks, output
        self.sizes = [s.numel for s in self.specs]
        self.num_weights = sum(self.sizes)
        self.first = nn.Conv2d(3, base, 9)          # shared by all styles; reflection-padded in forward
        self.first_norm = nn.InstanceNorm2d(base, affine=True)
        self.last = nn.Conv2d(base, 3, 9)

    def split(self, theta: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        out, offset = [], 0
        for s in self.specs:
            w = theta[offset: offset + s.weight_numel].reshape(s.cout, s.cin, s.kernel, s.kernel)
            offset += s.weight_numel
            gamma, beta = theta[offset: offset + s.cout], theta[offset + s.cout: offset + 2 * s.cout]
            offset += 2 * s.cout
            out.append((w, gamma, beta))
        return out

    @staticmethod
    def _conv(x: Tensor, spec: ConvSpec, weight: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        if spec.upsample > 1:
            x = F.interpolate(x, scale_factor=float(spec.upsample), mode="nearest")
        p = spec.kernel // 2
        x = F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), weight, stride=spec.stride)
        x = F.instance_norm(x, weight=gamma, bias=beta)
        return F.relu(x) if spec.relu else x

    def forward(self, x: Tensor, theta: Tensor) -> Tensor:
        """x: (N, 3, H, W) RGB in [0, 1]; theta: (num_weights,) one style's generated weights."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4), mode="reflect")
        x = F.relu(self.first_norm(self.first(F.pad(x, (4, 4, 4, 4), mode="reflect"))))
        layers = list(zip(self.specs, self.split(theta.reshape(-1))))
        for spec, params in layers[:2]:
            x = self._conv(x, spec, *params)
        for i in range(self.residual_blocks):
            (sa, pa), (sb, pb) = layers[2 + 2 * i], layers[3 + 2 * i]
            x = x + self._conv(self._conv(x, sa, *pa), sb, *pb)
        for spec, params in layers[2 + 2 * self.residual_blocks:]:
            x = self._conv(x, spec, *params)
        y = self.last(F.pad(x, (4, 4, 4, 4), mode="reflect"))
        return image_output(y[..., :h, :w], self.output, self.training)

    def initial_theta(self, generator: torch.Generator | None = None) -> Tensor:
        """Conv weights as PyTorch's default initialisation draws them; norm scale 1, shift 0."""
        parts = []
        for s in self.specs:
            bound = 1 / math.sqrt(s.cin * s.kernel * s.kernel)  # = gain(a=sqrt 5) * sqrt(3 / fan_in)
            parts += [torch.empty(s.weight_numel).uniform_(-bound, bound, generator=generator),
                      torch.ones(s.cout), torch.zeros(s.cout)]
        return torch.cat(parts)


class ScaledLinear(nn.Linear):
    """A linear layer whose weight is stored at unit scale and multiplied by ``gain`` when used (Karras et al.'s
    equalised learning rate): Adam moves every stored weight by about lr per step, so ``gain`` sets how far a
    step moves the output, whatever the fan-in."""

    def __init__(self, cin: int, cout: int, gain: float):
        super().__init__(cin, cout)
        self.gain = gain
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0)
            self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.gain, self.bias)


@STYLE_NETS.register("metanet")
class MetaNet(nn.Module):
    """style statistics (N, 1920) -> generated transformer weights (N, num_weights)."""

    input_kind, color = "style_stats", "rgb"

    def __init__(self, base: int = 8, hidden: int = 128, residual_blocks: int = 5,
                 tap_channels: tuple[int, ...] = META_TAP_CHANNELS, output: str = "scaled_tanh"):
        super().__init__()
        self.transformer = GeneratedTransformer(base, residual_blocks, output)
        self.tap_channels = tuple(tap_channels)
        self.in_features = 2 * sum(tap_channels)
        # Input standardisation (see the module docstring); set from the training paintings by set_input_scale.
        self.register_buffer("input_center", torch.zeros(self.in_features))
        self.register_buffer("input_scale", torch.ones(self.in_features))
        groups = len(self.transformer.specs)
        self.hidden = ScaledLinear(self.in_features, hidden * groups, 1 / math.sqrt(self.in_features))
        self.hidden_size = hidden
        # Each generated number is a head's bias (shared by every style) plus a sum over `hidden` products that
        # depend on the style. Scaled by 1 / hidden, one Adam step moves that sum about as far as it moves an
        # ordinary conv weight (lr); unscaled, it moved ~hidden times that (the earlier network needed lr 3e-5).
        self.heads = nn.ModuleList(ScaledLinear(hidden, n, 1 / hidden) for n in self.transformer.sizes)
        # Start from an ordinary randomly initialised transformer (the heads' biases) that the style input
        # moves a little, so early training sees sane activations whatever the style statistics.
        theta0 = self.transformer.initial_theta(torch.Generator().manual_seed(0))
        offset = 0
        with torch.no_grad():
            for head, n in zip(self.heads, self.transformer.sizes):
                head.bias.copy_(theta0[offset: offset + n])
                offset += n

    @torch.no_grad()
    def set_input_scale(self, stats: Tensor) -> None:
        """Centre each input on its mean over ``stats`` (the training paintings, (P, 1920)) and divide each tap's
        means and stds by one constant: their RMS deviation from that centre (with one painting, their mean
        size). Centred, the hidden layer sees what tells the paintings apart at order 1; uncentred, every
        painting's description is nearly the same positive vector and the generated weights barely differ."""
        center = stats.mean(0)
        scale, offset = [], 0
        for c in self.tap_channels:
            for _ in ("mean", "std"):
                part, mid = stats[:, offset: offset + c], center[offset: offset + c]
                spread = (part - mid).pow(2).mean().sqrt()
                size = part.abs().mean()
                scale.append(torch.where(spread > 1e-3 * size, spread, size).clamp_min(1e-6).expand(c))
                offset += c
        self.input_center.copy_(center)
        self.input_scale.copy_(torch.cat(scale))

    def forward(self, stats: Tensor) -> Tensor:
        h = F.relu(self.hidden((stats - self.input_center) / self.input_scale))
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
