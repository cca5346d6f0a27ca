"""SRGAN training (Ledig et al. 2017): MSE pre-training of the SRResNet generator, then adversarial training.

Phase 1 (``pretrain_steps``): the generator alone on pixel MSE (this is SRResNet).
Phase 2 (``steps``): alternate a discriminator step on  -log D(x) - log(1 - D(G(z)))  and a generator step on
l_content + adversarial_weight * (-log D(G(z))), with l_content = MSE / VGG22 / VGG54.  Logged every
``log_every`` steps: generator content and adversarial losses, discriminator loss, and the mean D(x) and
D(G(z)): a D(x) stuck at 1 with D(G(z)) at 0 is the sign of a collapsed game.  Same exact-resume
checkpoints as the supervised trainer (both networks, both optimisers, sampler and RNG states).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import Params
from ..losses import content_loss, discriminator_loss, generator_adversarial_loss
from ..models import MODELS, build_model
from ..models.sr.discriminator import SRGANDiscriminator
from .loop import (
    Progress,
    clip_gradients,
    fingerprint,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    seed_everything,
    select_device,
)
from .sr import TrainResult, finish_training, open_stores, validation_psnr

log = logging.getLogger(__name__)


def train_srgan(
    params: Params,
    run_name: str,
    patches_dir: Path,
    out_dir: Path,
    *,
    tracking_root: Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    run_cfg = params.run(run_name)
    cfg, name, scale = run_cfg.train, run_cfg.model, run_cfg.scale
    cls = MODELS.get(name)
    kwargs = params.model_kwargs(name)
    train_store, val_store = open_stores(patches_dir, cls.color, scale)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    total = cfg.pretrain_steps + cfg.steps

    seed_everything(params.seed)
    generator = build_model(name, scale, **kwargs).to(device)
    discriminator = SRGANDiscriminator(patch_size=train_store.index["hr_size"]).to(device)
    g_opt = make_optimizer(generator.parameters(), cfg)
    d_opt = make_optimizer(discriminator.parameters(), cfg.model_copy(update={"lr": cfg.discriminator_lr or cfg.lr}))
    content = content_loss(cfg.content_loss, params.perceptual.weights, params.perceptual.allow_random_init).to(device)
    state = Progress(len(train_store), cfg.batch_size, params.seed)

    fp = fingerprint(cfg.model_dump(exclude={"device", "threads", "checkpoint_every", "log_every"}), kwargs,
                     params.seed, train_store.index, val_store.index["count"], "srgan")
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    if ckpt is not None and ckpt.get("fingerprint") == fp:
        generator.load_state_dict(ckpt["generator"])
        discriminator.load_state_dict(ckpt["discriminator"])
        g_opt.load_state_dict(ckpt["g_opt"])
        d_opt.load_state_dict(ckpt["d_opt"])
        state.load(ckpt)
        log.info("resuming %s from step %d", run_name, state.step)
    start, history = state.step, state.history

    mlflow = None
    if tracking_root is not None:
        import mlflow

        from ..tracking import start_training_run

        logged = {"run": run_name, "model": name, "scale": scale, "seed": params.seed, "device": str(device),
                  **{f"train.{k}": v for k, v in cfg.model_dump().items()},
                  **{f"model.{k}": v for k, v in kwargs.items()},
                  "vgg_pretrained": getattr(getattr(content, "vgg", None), "pretrained", "n/a")}
        tags = {"task": "super-resolution", "srstyle.run": run_name, "srstyle.fingerprint": fp}
        state.run_id = start_training_run(params.tracking, tracking_root, out_dir, run_name, state.run_id,
                                          start == 0, logged, tags)

    def checkpoint(step: int) -> None:
        state.step = step
        save_checkpoint(ckpt_path, {
            "fingerprint": fp, "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "g_opt": g_opt.state_dict(), "d_opt": d_opt.state_dict(), **state.state(),
        })

    generator.train()
    discriminator.train()
    end = total if stop_after is None else min(total, start + stop_after)
    state.start_clock()
    bar = tqdm(range(start, end), initial=start, total=total, desc=f"train {run_name}", disable=not progress)
    for step in bar:
        lr, hr = train_store.batch(state.sampler.next_indices(), state.augment if cfg.augment else None)
        lr, hr = lr.to(device), hr.to(device)
        if step < cfg.pretrain_steps:
            loss = F.mse_loss(generator(lr), hr)
            g_opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(generator, g_opt, cfg)
            g_opt.step()
            state.accumulate(train_loss=loss.item())
        else:
            sr = generator(lr)
            real_logits, fake_logits = discriminator(hr), discriminator(sr.detach())
            d_loss = discriminator_loss(real_logits, fake_logits)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()

            fake_logits = discriminator(sr)
            g_content = content(sr, hr)
            g_adv = generator_adversarial_loss(fake_logits)
            g_loss = g_content + cfg.adversarial_weight * g_adv
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            clip_gradients(generator, g_opt, cfg)
            g_opt.step()
            state.accumulate(train_loss=g_loss.item(), g_content=g_content.item(), g_adversarial=g_adv.item(),
                       d_loss=d_loss.item(), d_real=torch.sigmoid(real_logits).mean().item(),
                       d_fake=torch.sigmoid(fake_logits).mean().item())
        done = step + 1
        if done % cfg.log_every == 0 or done == total:
            row = {"step": done, **state.pop_means()}
            if done % cfg.val_every == 0 or done == total:
                row["val_psnr"] = validation_psnr(generator, val_store, device)
                generator.train()
            history.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step"})
            if mlflow is not None:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "step"}, step=done)
        if done % cfg.checkpoint_every == 0 or done == end:
            checkpoint(done)
    bar.close()
    return finish_training(state, generator, val_store, out_dir, name, scale, kwargs, end, total, cfg.batch_size, mlflow)
