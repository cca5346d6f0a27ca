"""Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016.

No network is trained: the image itself is optimised. Starting from the content photo, L-BFGS minimises

    alpha * ||F_relu4_2(x) - F_relu4_2(content)||^2 + beta * sum_l w_l ||G_l(x) - G_l(style)||^2

over VGG19 (average pooling, as the paper recommends for synthesis) with style layers relu1_1 ... relu5_1.
``sizes`` with more than one entry runs coarse-to-fine (Gatys et al. 2017, "Controlling Perceptual Factors"):
the result of one pass, upsampled, initialises the next at a higher resolution.

No network is trained, so this lives beside the style networks rather than under ``train/``.

By default L-BFGS takes plain unit steps on the loss divided by its starting value (neural-style practice):
torch's strong-Wolfe search stalls after its first step on these losses. ``line_search: strong_wolfe``
selects it; every iterate it accepts lowers the loss. ``history`` records the loss at each iterate, so
``max_increase`` checks monotonicity rather than assuming it.

``precision`` bf16 autocasts the loss network's forward passes (VGG convolutions in bf16, where a CPU or GPU
runs them faster); the image, its gradient and L-BFGS's history stay fp32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ...config import GatysConfig
from ...losses import StyleTransferLoss
from ...train.precision import MixedPrecision


@dataclass
class GatysResult:
    image: Tensor                       # (1, 3, H, W) in [0, 1]
    history: list[dict] = field(default_factory=list)   # one row per iterate: pass, iteration, total, content, style
    seconds: float = 0.0
    precision: str = "fp32"             # autocast of the loss network during the optimisation


def resize_to(x: Tensor, longest: int) -> Tensor:
    h, w = x.shape[-2:]
    scale = longest / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return x
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def gatys_transfer(content: Tensor, style: Tensor, cfg: GatysConfig, loss: StyleTransferLoss, *,
                   iterations: list[int] | None = None, sizes: list[int] | None = None,
                   device: torch.device | str = "cpu", precision: str = "fp32", progress: bool = False) -> GatysResult:
    """Optimise an image with the content of ``content`` and the style of ``style`` (both (1,3,H,W) in [0,1]).
    ``precision`` (fp32 | bf16) is the autocast of the loss network; callers resolve ``auto`` (Stylizer.gatys)."""
    iterations = iterations or cfg.iterations
    sizes = sizes or cfg.sizes
    if len(iterations) != len(sizes):
        raise ValueError("gatys: one iteration count per size (coarse-to-fine pass)")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"style.gatys.precision: {precision!r} is not one of fp32, bf16 (resolve auto first)")
    autocast = MixedPrecision(precision, device).autocast  # the trainers' autocast; no optimiser step here
    loss = loss.to(device)
    result, image = GatysResult(image=content, precision=precision), None
    t0 = time.perf_counter()
    for pass_index, (iters, size) in enumerate(zip(iterations, sizes)):
        c = resize_to(content.to(device), size)
        with autocast():
            loss.set_style(resize_to(style.to(device), size))
            target = loss.content_features(c)
        start = c if image is None else F.interpolate(image, size=c.shape[-2:], mode="bicubic", align_corners=False)
        x = start.detach().clamp(0, 1).contiguous().clone().requires_grad_(True)
        # tolerance 0: the iteration count is ours; torch's defaults (|g| <= 1e-7) stop at once on the
        # relative loss of a large image, whose per-pixel gradients are that small.
        optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=cfg.history_size,
                                      tolerance_grad=0.0, tolerance_change=0.0, line_search_fn=cfg.line_search)
        calls = [0]
        start_of_step: dict[str, float] = {}
        if cfg.line_search:
            scale = 1.0
        else:
            with autocast():
                scale = 1.0 / max(float(loss(x, content_features=target)["total"].detach()), 1e-30)

        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                losses = loss(x, content_features=target)
            (losses["total"] * scale).backward()
            if calls[0] == 0:  # L-BFGS evaluates the current iterate first, then line-search trials
                start_of_step.update({k: float(v.detach()) for k, v in losses.items()})
            calls[0] += 1
            return losses["total"].detach() * scale

        bar = tqdm(range(iters), desc=f"gatys pass {pass_index + 1} ({size}px)", disable=not progress)
        for it in bar:
            calls[0] = 0
            optimizer.step(closure)
            result.history.append({"pass": pass_index, "iteration": it, **_row(start_of_step)})
            bar.set_postfix(loss=f"{start_of_step['total']:.4g}")
        with torch.no_grad(), autocast():
            final = {k: float(v) for k, v in loss(x, content_features=target).items()}
        result.history.append({"pass": pass_index, "iteration": iters, **_row(final)})
        image = x.detach().clamp(0, 1)
    result.image, result.seconds = image, time.perf_counter() - t0
    return result


def _row(values: dict[str, float]) -> dict[str, float]:
    return {k: values[k] for k in ("total", "content", "style", "tv")}


def max_increase(history: list[dict]) -> float:
    """Largest relative rise of the total loss from one iterate to the next within a pass (0 = monotone)."""
    worst = 0.0
    for a, b in zip(history, history[1:]):
        if a["pass"] == b["pass"] and a["total"] > 0:
            worst = max(worst, (b["total"] - a["total"]) / a["total"])
    return worst
