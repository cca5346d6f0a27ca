"""Training of the feed-forward style networks.

* ``train_fast_style`` - Johnson et al.: one TransformerNet per style, content crops in, perceptual loss
  (content at relu2_2, Gram style loss at relu1_2/relu2_2/relu3_3/relu4_3, total variation) against that style.
* ``train_meta`` - Shen et al.: the meta network turns a style's VGG statistics into a transformer's weights;
  it trains ``steps_per_style`` consecutive steps on one training painting (drawn in a seeded order that
  depends only on the step, so a resumed run draws the same), a batch of content crops each, and the loss
  flows through the generated weights into the meta network.

Both run in the shared skeleton (:func:`srstyle.train.loop.fit`: budget, schedule, exact resume, keep-best
on the held-out content photos, MLflow, progress) and write a ``model.pt`` loadable with
``torch.load(weights_only=True)`` and a ``samples.png``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..config import BackboneConfig, Params, StyleLossConfig, StyleTrainConfig
from ..data.style_data import ContentCrops, StylePaths, load_image, load_painting, style_names, to_uint8, validated_files
from ..data.download import sha256_file
from ..losses import StyleTransferLoss, gram_matrix
from ..models.backbones import build_backbone
from ..models.style import STYLE_NETS
from ..models.style.metanet import META_TAPS, MetaNet, style_statistics
from ..models.style.transformer_net import TransformerNet
from .checkpoints import durable_save
from .loop import Trainer, fingerprint, fit, seed_everything, select_device

log = logging.getLogger(__name__)


@dataclass
class StyleTrainResult:
    steps: int
    final_loss: float
    final_content: float
    final_style: float
    images_per_s: float
    run_id: str | None = None


def build_style_loss(loss_cfg: StyleLossConfig, backbone_cfg: BackboneConfig, extra_taps: tuple[str, ...] = ()) -> StyleTransferLoss:
    taps = list(dict.fromkeys([*loss_cfg.style_taps, loss_cfg.content_tap, *extra_taps]))
    backbone = build_backbone(backbone_cfg.arch, taps, backbone_cfg.weights, backbone_cfg.allow_random_init,
                              backbone_cfg.pooling)
    return StyleTransferLoss(backbone, loss_cfg.content_tap, loss_cfg.style_taps, loss_cfg.content_weight,
                             loss_cfg.style_weight, loss_cfg.tv_weight, loss_cfg.style_layer_weights)


def save_style_net(path: Path, kind: str, arch: str, kwargs: dict, net: nn.Module, step: int, **info) -> None:
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    durable_save({"kind": kind, "arch": arch, "kwargs": kwargs, "step": step, "state_dict": state,
                  **{k: str(v) for k, v in info.items()}}, path)


def load_style_net(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a trained TransformerNet / MetaNet from its ``model.pt``; returns (net, payload info)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained style model here (run `dvc repro train_style@<style>` / train_meta)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if "kind" not in payload or payload.get("arch") not in STYLE_NETS.names():
        raise ValueError(f"{path}: not an srstyle style model (no kind/arch); SR models go to `srstyle upscale`")
    net = STYLE_NETS.get(payload["arch"])(**payload["kwargs"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:  # a file of an earlier layout (e.g. the meta network that generated every conv)
        raise ValueError(f"{path}: written by an earlier srstyle whose {payload['arch']} had another layout; "
                         f"retrain it (`dvc repro` rebuilds it) ({str(exc).splitlines()[0]})") from None
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return net.to(device).eval(), info


def samples_picture(stylize: Callable[[Tensor], Tensor], contents: list[Tensor]) -> np.ndarray:
    """Contents on the top row, their stylised versions below (RGB uint8), same height per column."""
    cols = []
    with torch.no_grad():
        for c in contents:
            out = stylize(c)
            cols.append(np.concatenate([to_uint8(c[0]), to_uint8(out[0])], axis=0))
    height = max(c.shape[0] for c in cols)
    padded = [np.pad(c, ((0, height - c.shape[0]), (0, 4), (0, 0)), constant_values=255) for c in cols]
    return np.concatenate(padded, axis=1)


def _run_style(*, params: Params, kind: str, run_name: str, cfg: StyleTrainConfig, net: nn.Module,
               step_fn: Callable[[Tensor, int], dict[str, Tensor]], crops: ContentCrops,
               out_dir: Path, fp: str, logged: dict, tracking_root: Path | None, progress: bool,
               stop_after: int | None, device: torch.device, save_fn: Callable[[Path, nn.Module, int], None],
               val_fn: Callable[[nn.Module], dict[str, float]], stylize: Callable[[Tensor], Tensor],
               samples: list[Tensor]) -> StyleTrainResult:
    """Hand a style network to the shared skeleton: its step (content crops -> perceptual loss -> Adam),
    its validation (the loss on held-out content photos, lower is better) and its files (model.pt and
    samples.png, written from the exported weights)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    def step(state, i: int, plan) -> dict[str, Tensor]:
        # built on a worker thread while the previous step computes where style.<kind>.prefetch is on (auto: CUDA)
        content = state.next_batch(lambda indices, rng: crops.batch_to(indices, rng, device))
        losses = step_fn(content, i)
        state.optimize(losses["total"], optimizer)  # backward + step at train.precision (fp16: gradient scaler)
        return {f"loss_{k}": v.detach() for k, v in losses.items()}

    def save_model(path: Path, model: nn.Module, steps: int) -> None:
        save_fn(path, model, steps)
        from PIL import Image

        Image.fromarray(samples_picture(stylize, samples)).save(path.parent / "samples.png")

    def log_final(mlflow, model: nn.Module, result) -> None:
        from PIL import Image

        mlflow.log_image(np.asarray(Image.open(out_dir / "samples.png")), "samples_content_vs_stylised.png")
        mlflow.log_artifact(str(out_dir / "model.pt"), "model")

    trainer = Trainer(
        name=run_name, out_dir=out_dir, cfg=cfg, seed=params.seed, n_items=len(crops), model=net,
        optimizers={"model": optimizer}, step=step, save_model=save_model, fingerprint=fp, validate=val_fn,
        monitor="val_loss_total", higher_is_better=False, mlflow_params=logged,
        mlflow_tags={"task": "style-transfer", "srstyle.run": run_name, "srstyle.style_method": kind},
        log_final=log_final, loss_key="loss_total",
    )
    r = fit(trainer, tracking=params.tracking, tracking_root=tracking_root, progress=progress, stop_after=stop_after)
    last = [row for row in r.history if "loss_total" in row]
    last = last[-1] if last else {}
    return StyleTrainResult(r.steps, last.get("loss_total", math.nan), last.get("loss_content", math.nan),
                            last.get("loss_style", math.nan), r.items_per_s, r.run_id)


@torch.no_grad()
def validation_losses(net_loss: Callable[[Tensor], dict[str, Tensor]], contents: list[Tensor]) -> dict[str, float]:
    """Mean style-transfer losses over the held-out content photos (``val_loss_total`` picks the export)."""
    sums: dict[str, float] = {}
    for c in contents:
        for k, v in net_loss(c).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {f"val_loss_{k}": v / len(contents) for k, v in sums.items()}


def _setup(cfg: StyleTrainConfig, seed: int) -> torch.device:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(seed)
    return select_device(cfg.device)


def _sample_contents(paths: StylePaths, size: int, count: int = 3) -> list[Tensor]:
    return [load_image(p, size) for p in validated_files(paths, "content", "val")[:count]]


def train_fast_style(params: Params, style: str, paths: StylePaths, out_dir: Path, *,
                     tracking_root: Path | None = None, progress: bool = True,
                     stop_after: int | None = None) -> StyleTrainResult:
    """Train Johnson's TransformerNet for the painting named ``style``; write out_dir/model.pt."""
    cfg = params.style.fast
    styles = style_names(paths)
    if style not in styles:
        raise KeyError(f"style.fast.styles lists {style!r}, which is not among the validated style images {sorted(styles)}")
    device = _setup(cfg, params.seed)
    kwargs = {"channels": cfg.channels, "residual_blocks": cfg.residual_blocks, "output": cfg.output}
    if cfg.upsample != "nearest":  # files of the default architecture keep loading in older versions
        kwargs["upsample"] = cfg.upsample
    if cfg.downsample != "stride":
        kwargs["downsample"] = cfg.downsample
    net = TransformerNet(**kwargs).to(device)
    loss = build_style_loss(cfg.loss, params.style.backbone).to(device)
    style_image = load_painting(styles[style], cfg.style_size).to(device)
    loss.set_style(style_image)
    crops = ContentCrops(validated_files(paths, "content", "train"), cfg.image_size)

    def step_fn(content: Tensor, _step: int) -> dict[str, Tensor]:
        return loss(net(content), content)

    fp = fingerprint(cfg.model_dump(exclude={"device", "threads", "checkpoint_every", "log_every", "styles"}),
                     params.style.backbone.model_dump(), params.seed, sha256_file(styles[style]),
                     [p.name for p in crops.files])
    logged = {"style": style, "method": "johnson", "seed": params.seed, "device": str(device),
              "backbone": loss.backbone.description, "content_images": len(crops),
              **{f"fast.{k}": v for k, v in cfg.model_dump(exclude={"styles", "loss"}).items()},
              **{f"loss.{k}": v for k, v in cfg.loss.model_dump().items()}}
    val_contents = [c.to(device) for c in _sample_contents(paths, cfg.image_size)]

    def val_fn(model: nn.Module) -> dict[str, float]:
        model.eval()
        return validation_losses(lambda c: loss(model(c), c), val_contents)

    return _run_style(
        params=params, kind="fast", run_name=f"style_fast_{style}", cfg=cfg, net=net, step_fn=step_fn, crops=crops,
        out_dir=out_dir, fp=fp, logged=logged, tracking_root=tracking_root, progress=progress, stop_after=stop_after,
        device=device, stylize=lambda c: net(c.to(device)).cpu(), samples=_sample_contents(paths, cfg.style_size),
        val_fn=val_fn,
        save_fn=lambda path, model, step: save_style_net(path, "fast", "transformer_net", kwargs, model, step,
                                                         style=style, backbone=loss.backbone.description),
    )


@torch.no_grad()
def describe_styles(loss: StyleTransferLoss, files: dict[str, Path], size: int, device) -> dict[str, dict]:
    """name -> {"stats": (1, 1920) meta-network input, "grams": style targets}, computed once per painting."""
    out = {}
    for name, path in files.items():
        feats = loss.backbone(load_painting(path, size).to(device))
        out[name] = {"stats": style_statistics(feats, META_TAPS),
                     "grams": {t: gram_matrix(feats[t]) for t in loss.style_taps}}
    return out


def train_meta(params: Params, paths: StylePaths, out_dir: Path, *, tracking_root: Path | None = None,
               progress: bool = True, stop_after: int | None = None) -> StyleTrainResult:
    """Train the meta network on the training styles (held-out ones never seen); write out_dir/model.pt."""
    cfg = params.style.meta
    train_styles = style_names(paths, "train")
    if not train_styles:
        raise ValueError("no training styles left after holding out style.styles.held_out")
    device = _setup(cfg, params.seed)
    kwargs = {"base": cfg.base, "hidden": cfg.hidden, "residual_blocks": cfg.residual_blocks, "output": cfg.output}
    net = MetaNet(**kwargs).to(device)
    loss = build_style_loss(cfg.loss, params.style.backbone, extra_taps=META_TAPS).to(device)
    described = describe_styles(loss, train_styles, cfg.style_size, device)
    names = sorted(described)
    net.set_input_scale(torch.cat([described[n]["stats"] for n in names]))
    crops = ContentCrops(validated_files(paths, "content", "train"), cfg.image_size)

    def style_at(step: int) -> str:
        """Every painting once per cycle of len(names) * steps_per_style steps, in a seeded order per cycle."""
        block = step // cfg.steps_per_style
        order = np.random.default_rng([params.seed, block // len(names)]).permutation(len(names))
        return names[int(order[block % len(names)])]

    def step_fn(content: Tensor, step: int) -> dict[str, Tensor]:
        style = described[style_at(step)]
        theta = net(style["stats"])
        return loss(net.transformer(content, theta[0]), content, style_grams=style["grams"])

    fp = fingerprint(cfg.model_dump(exclude={"device", "threads", "checkpoint_every", "log_every"}),
                     params.style.backbone.model_dump(), params.seed,
                     {n: sha256_file(p) for n, p in train_styles.items()}, [p.name for p in crops.files])
    logged = {"method": "meta", "seed": params.seed, "device": str(device), "backbone": loss.backbone.description,
              "train_styles": ",".join(names), "held_out_styles": ",".join(sorted(style_names(paths, "val"))),
              "content_images": len(crops), "generated_weights": net.transformer.num_weights,
              "generated_kib": round(net.transformer.num_weights * 4 / 1024, 1),
              **{f"meta.{k}": v for k, v in cfg.model_dump(exclude={"loss"}).items()},
              **{f"loss.{k}": v for k, v in cfg.loss.model_dump().items()}}
    first = described[names[0]]["stats"]
    val_contents = [c.to(device) for c in _sample_contents(paths, cfg.image_size)]

    def val_fn(model: nn.Module) -> dict[str, float]:
        """Every training style on every held-out content photo."""
        model.eval()
        rows = [validation_losses(lambda c, st=st: loss(model.transformer(c, model(st["stats"])[0]), c,
                                                          style_grams=st["grams"]), val_contents)
                for st in (described[n] for n in names)]
        return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}

    return _run_style(
        params=params, kind="meta", run_name="style_meta", cfg=cfg, net=net, step_fn=step_fn, crops=crops,
        out_dir=out_dir, fp=fp, logged=logged, tracking_root=tracking_root, progress=progress, stop_after=stop_after,
        device=device, stylize=lambda c: net.stylize(c.to(device), first).cpu(),
        samples=_sample_contents(paths, cfg.style_size), val_fn=val_fn,
        save_fn=lambda path, model, step: save_style_net(path, "meta", "metanet", kwargs, model, step,
                                                         backbone=loss.backbone.description, train_styles=",".join(names)),
    )
