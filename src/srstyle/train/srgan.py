"""SRGAN training (Ledig et al. 2017): MSE pre-training of the SRResNet generator, then adversarial training.

Phase 1 (``pretrain_steps``): the generator alone on pixel MSE (this is SRResNet).
Phase 2 (``steps``): alternate a discriminator step on  -log D(x) - log(1 - D(G(z)))  and a generator step on
l_content + adversarial_weight * (-log D(G(z))), with l_content = MSE / VGG22 / VGG54.  Logged every
``log_every`` steps: generator content and adversarial losses, discriminator loss, and the mean D(x) and
D(G(z)): a D(x) stuck at 1 with D(G(z)) at 0 is the sign of a collapsed game.  Runs in the shared
skeleton (:func:`srstyle.train.loop.fit`): both networks and optimisers are checkpointed; the exported
generator is the one of the adversarial phase with the lowest content loss on validation patches (its own
perceptual objective; PSNR is logged beside it), never a pre-training snapshot. Under a time
budget both phases shrink in proportion.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import Params
from ..losses import content_loss, discriminator_loss, generator_adversarial_loss
from ..models import MODELS, build_model
from ..models.sr.discriminator import SRGANDiscriminator
from .loop import Plan, Progress, Trainer, clip_gradients, make_optimizer, seed_everything, select_device
from .sr_common import (open_stores, sr_final_logger, sr_fingerprint, sr_logged_params, sr_model_writer,
                        validation_psnr)

log = logging.getLogger(__name__)

VAL_CONTENT_PATCHES = 64  # the VGG content loss is costly on CPU: the first validation patches suffice


def srgan_trainer(params: Params, run_name: str, patches_dir: Path, out_dir: Path) -> Trainer:
    run_cfg = params.run(run_name)
    # The skeleton counts steps over both phases; `steps` of the recipe is the adversarial phase.
    cfg = run_cfg.train.model_copy(update={"steps": run_cfg.train.pretrain_steps + run_cfg.train.steps})
    name, scale = run_cfg.model, run_cfg.scale
    cls = MODELS.get(name)
    kwargs = run_cfg.model_kwargs
    train_store, val_store = open_stores(patches_dir, *run_cfg.store(cls.color))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)

    seed_everything(params.seed)
    cl = torch.channels_last  # faster convolutions on CPU and GPU (see train/sr.py)
    generator = build_model(name, scale, **kwargs).to(device, memory_format=cl)
    discriminator = SRGANDiscriminator(patch_size=train_store.index["hr_size"]).to(device, memory_format=cl)
    g_opt = make_optimizer(generator.parameters(), cfg)
    d_opt = make_optimizer(discriminator.parameters(), cfg.model_copy(update={"lr": cfg.discriminator_lr or cfg.lr}))
    content = content_loss(cfg.content_loss, params.perceptual.weights, params.perceptual.allow_random_init)
    content = content.to(device, memory_format=cl)

    def pretrain_end(plan: Plan) -> int:
        return plan.scaled(cfg.pretrain_steps)

    def step(state: Progress, i: int, plan: Plan) -> dict[str, torch.Tensor]:
        lr, hr = state.next_batch(lambda indices, rng: train_store.batch_to(indices, rng if cfg.augment else None, device))
        if i < pretrain_end(plan):
            loss = F.mse_loss(generator(lr), hr)
            state.optimize(loss, g_opt, clip=lambda: clip_gradients(generator, g_opt, cfg))
            return {"train_loss": loss.detach()}
        sr = generator(lr)
        real_logits, fake_logits = discriminator(hr), discriminator(sr.detach())
        d_loss = discriminator_loss(real_logits, fake_logits)
        state.optimize(d_loss, d_opt)

        fake_logits = discriminator(sr)
        g_content = content(sr, hr)
        g_adv = generator_adversarial_loss(fake_logits)
        g_loss = g_content + cfg.adversarial_weight * g_adv
        state.optimize(g_loss, g_opt, clip=lambda: clip_gradients(generator, g_opt, cfg))
        with torch.no_grad():
            return {"train_loss": g_loss.detach(), "g_content": g_content.detach(), "g_adversarial": g_adv.detach(),
                    "d_loss": d_loss.detach(), "d_real": torch.sigmoid(real_logits).mean(),
                    "d_fake": torch.sigmoid(fake_logits).mean()}

    @torch.no_grad()
    def validate(model) -> dict[str, float]:
        """PSNR (distortion) and the content loss (the generator's perceptual objective) on validation patches;
        the exported generator is the one with the lowest validation content loss."""
        model.eval()
        total, n = 0.0, 0
        for lr, hr in val_store.iter_batches(16):
            total += float(content(model(lr.to(device)).clamp(0, 1), hr.to(device))) * len(lr)
            n += len(lr)
            if n >= VAL_CONTENT_PATCHES:
                break
        return {"val_psnr": validation_psnr(model, val_store, device), "val_content": total / n}

    vgg = getattr(getattr(content, "vgg", None), "pretrained", "n/a")
    return Trainer(
        name=run_name, out_dir=out_dir, cfg=cfg, seed=params.seed, n_items=len(train_store), model=generator,
        extra_modules={"discriminator": discriminator}, optimizers={"generator": g_opt, "discriminator": d_opt},
        step=step, save_model=sr_model_writer(name, scale, kwargs),
        fingerprint=sr_fingerprint(cfg, kwargs, params.seed, train_store, val_store, "srgan"),
        validate=validate, monitor="val_content", higher_is_better=False, best_from=pretrain_end, phase=lambda i, plan: int(i >= pretrain_end(plan)),
        mlflow_params=sr_logged_params(run_cfg, params, kwargs, device, train_store, val_store, vgg_pretrained=vgg),
        mlflow_tags={"task": "super-resolution", "srstyle.run": run_name},
        log_final=sr_final_logger(val_store, name, scale),
    )
