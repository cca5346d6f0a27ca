"""Training of the feed-forward style networks.

* ``train_fast_style`` - Johnson et al.: one TransformerNet per style, content crops in, perceptual loss
  (content at relu2_2, Gram style loss at relu1_2/relu2_2/relu3_3/relu4_3, total variation) against that style.
* ``train_meta`` - Shen et al.: the meta network turns a style's VGG statistics into a transformer's weights;
  each step draws one training style and a batch of content crops, and the loss flows through the generated
  weights into the meta network.

Both share the loop below: seeded sampling kept in checkpoints (exact resume), tqdm, MLflow (params, losses,
samples picture, curve), and a ``model.pt`` loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..config import BackboneConfig, Params, StyleLossConfig, StyleTrainConfig
from ..data.style_data import ContentCrops, StylePaths, load_image, style_names, to_uint8, validated_files
from ..data.download import sha256_file
from ..io import atomic_write, write_json
from ..losses import StyleTransferLoss, gram_matrix
from ..models.backbones import build_backbone
from ..models.style import STYLE_NETS
from ..models.style.metanet import META_TAPS, MetaNet, style_statistics
from ..models.style.transformer_net import TransformerNet
from .loop import Progress, fingerprint, load_checkpoint, save_checkpoint, seed_everything, select_device

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
    save_checkpoint(path, {"kind": kind, "arch": arch, "kwargs": kwargs, "step": step, "state_dict": state,
                           **{k: str(v) for k, v in info.items()}})


def load_style_net(path: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a trained TransformerNet / MetaNet from its ``model.pt``; returns (net, payload info)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained style model here (run `dvc repro train_style@<style>` / train_meta)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if "kind" not in payload or payload.get("arch") not in STYLE_NETS.names():
        raise ValueError(f"{path}: not an srstyle style model (no kind/arch); SR models go to `srstyle upscale`")
    net = STYLE_NETS.get(payload["arch"])(**payload["kwargs"])
    net.load_state_dict(payload["state_dict"])
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return net.to(device).eval(), info


def _write_curve(path: Path, history: list[dict]) -> None:
    keys = ["step"] + sorted({k for row in history for k in row} - {"step"})
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in keys})


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


def _train_loop(*, params: Params, kind: str, run_name: str, cfg: StyleTrainConfig, net: nn.Module,
                step_fn: Callable[[Tensor, np.random.Generator], dict[str, Tensor]], crops: ContentCrops,
                out_dir: Path, fp: str, logged: dict, tracking_root: Path | None, progress: bool,
                stop_after: int | None, device: torch.device, save_fn: Callable[[int], None],
                stylize: Callable[[Tensor], Tensor], samples: list[Tensor]) -> StyleTrainResult:
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    state = Progress(len(crops), cfg.batch_size, params.seed)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    if ckpt is not None and ckpt.get("fingerprint") == fp:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.load(ckpt)
        log.info("resuming %s from step %d (%s)", run_name, state.step, ckpt_path)
    elif ckpt is not None:
        log.info("ignoring %s: it was made with a different configuration", ckpt_path)
    start, history = state.step, state.history

    mlflow = None
    if tracking_root is not None:
        import mlflow

        from ..tracking import start_training_run

        tags = {"task": "style-transfer", "srstyle.run": run_name, "srstyle.style_method": kind, "srstyle.fingerprint": fp}
        state.run_id = start_training_run(params.tracking, tracking_root, out_dir, run_name, state.run_id, start == 0,
                                          logged, tags)

    def checkpoint(step: int) -> None:
        state.step = step
        save_checkpoint(ckpt_path, {"fingerprint": fp, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                    **state.state()})

    net.train()
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    state.start_clock()
    bar = tqdm(range(start, end), initial=start, total=cfg.steps, desc=f"train {run_name}", disable=not progress)
    for step in bar:
        content = crops.batch(state.sampler.next_indices(), state.augment).to(device)
        losses = step_fn(content, state.augment)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        state.accumulate(**{f"loss_{k}": float(v.detach()) for k, v in losses.items()})
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            row = {"step": done, **state.pop_means()}
            history.append(row)
            bar.set_postfix(loss=f"{row['loss_total']:.4g}", style=f"{row['loss_style']:.4g}")
            if mlflow is not None:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "step"}, step=done)
        if done % cfg.checkpoint_every == 0 or done == end:
            checkpoint(done)
    bar.close()

    seconds = state.seconds
    rate = (end - 0) * cfg.batch_size / seconds if seconds > 0 else 0.0
    last = history[-1] if history else {}
    result = StyleTrainResult(end, last.get("loss_total", math.nan), last.get("loss_content", math.nan),
                              last.get("loss_style", math.nan), rate, state.run_id)
    if end < cfg.steps:
        if mlflow is not None:
            mlflow.end_run(status="KILLED")
        return result
    net.eval()
    save_fn(cfg.steps)
    _write_curve(out_dir / "curve.csv", history)
    write_json({k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(result).items() if k != "run_id"},
               out_dir / "train_metrics.json")
    picture = samples_picture(stylize, samples)
    from PIL import Image

    Image.fromarray(picture).save(out_dir / "samples.png")
    if mlflow is not None:
        mlflow.log_metric("train_images_per_s", rate)
        mlflow.log_artifact(str(out_dir / "curve.csv"))
        mlflow.log_image(picture, "samples_content_vs_stylised.png")
        mlflow.log_artifact(str(out_dir / "model.pt"), "model")
        mlflow.end_run()
    return result


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
    kwargs = {"channels": cfg.channels, "residual_blocks": cfg.residual_blocks}
    net = TransformerNet(**kwargs).to(device)
    loss = build_style_loss(cfg.loss, params.style.backbone).to(device)
    style_image = load_image(styles[style], cfg.style_size).to(device)
    loss.set_style(style_image)
    crops = ContentCrops(validated_files(paths, "content", "train"), cfg.image_size)

    def step_fn(content: Tensor, _rng) -> dict[str, Tensor]:
        return loss(net(content), content)

    fp = fingerprint(cfg.model_dump(exclude={"device", "threads", "checkpoint_every", "log_every", "styles"}),
                     params.style.backbone.model_dump(), params.seed, sha256_file(styles[style]),
                     [p.name for p in crops.files])
    logged = {"style": style, "method": "johnson", "seed": params.seed, "device": str(device),
              "backbone": loss.backbone.description, "content_images": len(crops),
              **{f"fast.{k}": v for k, v in cfg.model_dump(exclude={"styles", "loss"}).items()},
              **{f"loss.{k}": v for k, v in cfg.loss.model_dump().items()}}
    return _train_loop(
        params=params, kind="fast", run_name=f"style_fast_{style}", cfg=cfg, net=net, step_fn=step_fn, crops=crops,
        out_dir=out_dir, fp=fp, logged=logged, tracking_root=tracking_root, progress=progress, stop_after=stop_after,
        device=device, stylize=lambda c: net(c.to(device)).cpu(), samples=_sample_contents(paths, cfg.style_size),
        save_fn=lambda step: save_style_net(out_dir / "model.pt", "fast", "transformer_net", kwargs, net, step,
                                            style=style, backbone=loss.backbone.description),
    )


@torch.no_grad()
def describe_styles(loss: StyleTransferLoss, files: dict[str, Path], size: int, device) -> dict[str, dict]:
    """name -> {"stats": (1, 1920) meta-network input, "grams": style targets}, computed once per painting."""
    out = {}
    for name, path in files.items():
        feats = loss.backbone(load_image(path, size).to(device))
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
    kwargs = {"base": cfg.base, "hidden": cfg.hidden, "residual_blocks": cfg.residual_blocks}
    net = MetaNet(**kwargs).to(device)
    loss = build_style_loss(cfg.loss, params.style.backbone, extra_taps=META_TAPS).to(device)
    described = describe_styles(loss, train_styles, cfg.style_size, device)
    names = sorted(described)
    crops = ContentCrops(validated_files(paths, "content", "train"), cfg.image_size)

    def step_fn(content: Tensor, rng: np.random.Generator) -> dict[str, Tensor]:
        style = described[names[int(rng.integers(len(names)))]]
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
    return _train_loop(
        params=params, kind="meta", run_name="style_meta", cfg=cfg, net=net, step_fn=step_fn, crops=crops,
        out_dir=out_dir, fp=fp, logged=logged, tracking_root=tracking_root, progress=progress, stop_after=stop_after,
        device=device, stylize=lambda c: net.stylize(c.to(device), first).cpu(),
        samples=_sample_contents(paths, cfg.style_size),
        save_fn=lambda step: save_style_net(out_dir / "model.pt", "meta", "metanet", kwargs, net, step,
                                            backbone=loss.backbone.description, train_styles=",".join(names)),
    )
