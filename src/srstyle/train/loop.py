"""The one trainer skeleton every training uses (SR, SRGAN, fast style, meta style).

A trainer describes itself as a :class:`Trainer` (its networks, optimisers, one step function, one
validation function and how to write its model file); :func:`fit` owns everything else:

* the step budget: ``steps``, or with ``time_budget_s`` a warm-up that measures the step rate (then the
  state is rolled back) and fixes the step count that fits, recorded so a rerun with ``steps`` set to it
  reproduces the model exactly;
* the learning-rate schedule (warm-up, then cosine / step decay / constant), a pure function of the step
  and the step count, so it needs no state of its own and compresses with the budget;
* an optional exponential moving average of the weights;
* seeded sampling and RNG state, checkpoints (durable, corrupt ones set aside) and exact resume;
* validation every ``val_every`` steps and keep-best: ``model.pt`` is written from the best validated
  weights (``checkpoints/best.pt``), ``checkpoints/last.pt`` stays for resume;
* loss-spike detection (a counted metric and a warning);
* the training precision (``train.precision``, :mod:`srstyle.train.precision`): each step runs under
  autocast, and step functions backward and step through :meth:`Progress.optimize` (the fp16 gradient
  scaler lives there); weights, optimiser state, validation, checkpoints and exports stay fp32;
* MLflow (params, tags, metrics, system metrics, a machine-independent run record), tqdm progress, timing,
  and the write-out (``model.pt``, ``curve.csv``, ``train_metrics.json``).

Losses are accumulated as tensors and read once per logged row (no per-step host sync).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import LoopConfig, TrackingConfig
from ..io import atomic_write, write_json
from .checkpoints import durable_save, load_checkpoint, read_checkpoint, save_checkpoint
from .distributed import DistContext
from .precision import PRECISIONS, MixedPrecision, PrecisionChoice, resolve_precision

log = logging.getLogger(__name__)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fingerprint(*parts: Any) -> str:
    """Stable hash of the things that make a checkpoint resumable (config, data)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def make_optimizer(params, cfg) -> torch.optim.Optimizer:
    """Adam (betas from params) or SGD with momentum, as the recipe says."""
    if getattr(cfg, "optimizer", "adam") == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(getattr(cfg, "betas", (0.9, 0.999))),
                            weight_decay=getattr(cfg, "weight_decay", 0.0))


def clip_gradients(model: nn.Module, optimizer: torch.optim.Optimizer, cfg) -> None:
    """Global-norm clipping, or VDSR's adjustable clipping: each gradient to [-c/lr, c/lr]."""
    if not getattr(cfg, "grad_clip", 0.0):
        return
    if cfg.grad_clip_adjustable:
        lr = optimizer.param_groups[0]["lr"]
        torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip / lr)
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)


# --- Budget and schedule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How many steps this training runs (``total``) against the configured ``nominal`` count."""

    total: int
    nominal: int

    def scaled(self, steps: int) -> int:
        """A step position of the nominal schedule (a milestone, a phase end) moved to this budget."""
        return min(self.total, round(steps * self.total / self.nominal))


def lr_factor(step: int, plan: Plan, cfg: LoopConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): warm-up, then the decay."""
    warm = min(cfg.warmup_steps, plan.total // 10)
    ramp = (step + 1) / warm if step < warm else 1.0
    if cfg.lr_schedule == "cosine":
        progress = max(0, step - warm) / max(1, plan.total - warm - 1)
        decay = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    elif cfg.lr_schedule == "step":
        decay = cfg.lr_gamma ** sum(step >= plan.scaled(m) for m in cfg.lr_milestones)
    else:
        decay = 1.0
    return ramp * decay


def set_lr(optimizers: dict[str, torch.optim.Optimizer], factor: float) -> None:
    for opt in optimizers.values():
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


# --- What a trainer supplies ------------------------------------------------------------------------------


@dataclass
class Trainer:
    name: str                                   # MLflow run name and progress label
    out_dir: Path
    cfg: LoopConfig
    seed: int
    n_items: int                                # sampler population (patches, content crops)
    model: nn.Module                            # the network that is validated and exported
    optimizers: dict[str, torch.optim.Optimizer]
    # One training step: draw from state.sampler/state.augment, forward and loss (run under autocast at the
    # training precision), then state.optimize(loss, optimizer) for each optimiser step (backward, clip,
    # step, through the fp16 gradient scaler); returns detached scalar tensors to log ("train_loss" is the
    # one watched for spikes).
    step: Callable[["Progress", int, Plan], dict[str, Tensor]]
    save_model: Callable[[Path, nn.Module, int], None]   # write model.pt from the exported weights
    fingerprint: str
    extra_modules: dict[str, nn.Module] = field(default_factory=dict)   # also checkpointed (a discriminator)
    validate: Callable[[nn.Module], dict[str, float]] | None = None     # on the exported weights
    monitor: str = "val_psnr"
    higher_is_better: bool = True
    # First step from which a validation may become the exported model (SRGAN: after pre-training).
    best_from: Callable[[Plan], int] = lambda plan: 0
    phase: Callable[[int, Plan], int] = lambda step, plan: 0   # spikes are judged within one phase
    mlflow_params: dict = field(default_factory=dict)
    mlflow_tags: dict = field(default_factory=dict)
    log_final: Callable[[Any, nn.Module, "FitResult"], None] | None = None   # extra MLflow artifacts
    ctx: DistContext = field(default_factory=DistContext)
    loss_key: str = "train_loss"


@dataclass
class FitResult:
    steps: int                  # steps run in total (the recorded count under a time budget)
    finished: bool              # False when stopped early (stop_after): nothing written but checkpoints
    history: list[dict]
    best_step: int | None
    best_value: float | None
    final_value: float | None
    exported: str               # "best", "ema", "last"
    loss_spikes: int
    items_per_s: float
    seconds: float
    run_id: str | None

    loss_key: str = "train_loss"

    @property
    def final_loss(self) -> float:
        rows = [r for r in self.history if self.loss_key in r]
        return rows[-1][self.loss_key] if rows else math.nan


class Progress:
    """Everything besides the networks and optimisers that an exactly resumed training must restore:
    the batch sampler, the augmentation and torch RNGs, the logged history, the loss sums since the last
    logged row, the spike detector, the best validation, the step budget, the MLflow run id and the
    training time summed over sessions, and the fp16 gradient scaler (``amp``)."""

    def __init__(self, n_items: int, batch_size: int, seed: int, amp: MixedPrecision | None = None,
                 prefetch: bool = False):
        from ..data.datasets import BatchSampler

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="srstyle-prefetch") if prefetch else None
        self._ahead: tuple[Future, tuple[dict, dict]] | None = None   # the next batch, and the draws before it
        self.amp = amp or MixedPrecision("fp32")
        self.sampler = BatchSampler(n_items, batch_size, seed)
        self.augment = np.random.default_rng(seed + 1)
        self.step = 0
        self.total: int | None = None
        self.history: list[dict] = []
        self.run_id: str | None = None
        self.sums: dict[str, Tensor] = {}
        self.count = 0
        self.spikes = {"count": 0, "reference": None, "phase": 0, "high_since": None}
        self.best: dict = {"step": None, "value": None}
        self._seconds_before = 0.0
        self._t0 = time.perf_counter()

    def optimize(self, loss: Tensor, optimizer: torch.optim.Optimizer, clip: Callable[[], None] | None = None) -> None:
        """zero_grad, backward ``loss``, ``clip()`` the gradients if given, step ``optimizer``: at the training
        precision (in fp16 through the gradient scaler: clip sees unscaled gradients). Every step function
        backwards through this."""
        self.amp.optimize(loss, optimizer, clip)

    def next_batch(self, build: Callable[[np.ndarray, np.random.Generator], Any]) -> Any:
        """The step's batch: ``build(indices, augment)`` on the indices the sampler draws next.

        With prefetch the following batch is submitted to a worker thread at once, so its gathering,
        augmentation and host-to-device copy overlap this step's compute. Its indices are drawn here, on the
        training thread, in step order, and only the worker touches ``augment`` (it is idle whenever a
        draw or a snapshot happens); :meth:`state` saves both generators as they were before that batch's
        draws, so a resumed run draws exactly the batches the uninterrupted one did."""
        if self._pool is None:
            return build(self.sampler.next_indices(), self.augment)
        if self._ahead is None:
            self._ahead = self._submit(build)
        batch = self._ahead[0].result()
        self._ahead = self._submit(build)
        return batch

    def _submit(self, build) -> tuple[Future, tuple[dict, dict]]:
        before = (self.sampler.state(), self.augment.bit_generator.state)
        return self._pool.submit(build, self.sampler.next_indices(), self.augment), before

    def _drop_ahead(self) -> None:
        """Forget the batch drawn ahead and put the generators back to before its draws."""
        if self._ahead is not None:
            self._ahead[0].exception()  # wait: the worker must be done with the generators
            sampler, augment = self._ahead[1]
            self.sampler.load_state(sampler)
            self.augment.bit_generator.state = augment
            self._ahead = None

    def close(self) -> None:
        self._drop_ahead()
        if self._pool is not None:
            self._pool.shutdown()

    def start_clock(self) -> None:
        self._t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self._seconds_before + time.perf_counter() - self._t0

    def accumulate(self, values: dict[str, Tensor]) -> None:
        for key, value in values.items():
            v = value.detach().to("cpu", torch.float64) if isinstance(value, Tensor) else torch.tensor(float(value), dtype=torch.float64)
            if key in self.sums:
                self.sums[key] += v
            else:
                self.sums[key] = v.clone()
        self.count += 1

    def pop_sums(self) -> tuple[dict[str, float], int]:
        sums, count = {k: float(v) for k, v in self.sums.items()}, self.count
        self.sums, self.count = {}, 0
        return sums, count

    def state(self) -> dict:
        sampler, augment = self._ahead[1] if self._ahead else (self.sampler.state(), self.augment.bit_generator.state)
        return {
            "step": self.step, "total_steps": self.total or 0, "run_id": self.run_id or "",
            "sampler": json.dumps(sampler), "augment": json.dumps(augment),
            "torch_rng": torch.get_rng_state(), "history": json.dumps(self.history),
            "running": json.dumps({"sums": {k: float(v) for k, v in self.sums.items()}, "count": self.count}),
            "spikes": json.dumps(self.spikes), "best": json.dumps(self.best), "seconds": self.seconds,
            "amp": json.dumps(self.amp.state_dict()),
        }

    def load(self, ckpt: dict) -> None:
        self._drop_ahead()  # a batch drawn ahead of the restored state is not the next one any more
        self.step = int(ckpt["step"])
        self.total = int(ckpt.get("total_steps", 0)) or None
        self.run_id = ckpt.get("run_id") or None
        self.sampler.load_state(json.loads(ckpt["sampler"]))
        self.augment.bit_generator.state = json.loads(ckpt["augment"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.history = json.loads(ckpt["history"])
        running = json.loads(ckpt["running"])
        self.sums = {k: torch.tensor(v, dtype=torch.float64) for k, v in running.get("sums", {}).items()}
        self.count = int(running.get("count", 0))
        self.spikes = json.loads(ckpt.get("spikes", json.dumps(self.spikes)))
        self.best = json.loads(ckpt.get("best", json.dumps(self.best)))
        self._seconds_before = float(ckpt.get("seconds", 0.0))
        self.amp.load_state_dict(json.loads(ckpt.get("amp", "{}")))


# --- Weights: EMA, snapshots ------------------------------------------------------------------------------


class WeightAverage:
    """Exponential moving average of a module's weights (buffers copied), with the usual early ramp."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema, cur = list(self.module.parameters()), [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema, cur, 1 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)


def _unwrapped_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# --- MLflow ----------------------------------------------------------------------------------------------


def run_record(run_id: str, experiment_id: str, cfg: TrackingConfig, uri: str) -> dict:
    """What ``mlflow_run.json`` holds: ids and a logical store reference, never a path of this machine
    (the file is a DVC output and must be the same in every clone). ``uri``: MLFLOW_TRACKING_URI as the
    user set it (read before MLflow sets it itself), or empty."""
    if uri.startswith(("http://", "https://")):
        store = uri  # a team server's address is the same from every machine
    elif uri:
        store = "env:MLFLOW_TRACKING_URI"  # a local file/database URI names this machine's paths
    else:
        store = f"project:{cfg.store}"  # tracking.store, relative to the project root
    return {"run_id": run_id, "experiment_id": experiment_id, "experiment": cfg.experiment, "tracking_uri": store}


def start_mlflow_run(cfg: TrackingConfig, root: Path, out_dir: Path, run_name: str, run_id: str | None,
                     first: bool, params: dict, tags: dict):
    """Start (or on resume re-open) the MLflow run of a training, with system metrics; record its ids."""
    import mlflow

    from ..tracking import setup

    user_uri = os.environ.get("MLFLOW_TRACKING_URI", "")  # before setup(): MLflow exports the URI it is given
    experiment_id = setup(cfg, root)
    run = None
    if run_id:
        try:
            run = mlflow.start_run(run_id=run_id, log_system_metrics=True)
        except Exception as exc:  # noqa: BLE001 - the store was moved or reset: log to a new run
            log.warning("MLflow run %s of the checkpoint is not in this store (%s); starting a new run", run_id, exc)
            first = True
    if run is None:
        run = mlflow.start_run(run_name=run_name, log_system_metrics=True)
    if first:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
    write_json(run_record(run.info.run_id, experiment_id, cfg, user_uri), out_dir / "mlflow_run.json")
    return run.info.run_id


# --- Write-out -------------------------------------------------------------------------------------------


def write_curve(path: Path, history: list[dict]) -> None:
    keys = ["step", "train_loss", "val_psnr"]
    keys = [k for k in keys if any(k in row for row in history)] or ["step"]
    keys += sorted({k for row in history for k in row} - set(keys))
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in writer.fieldnames})


# --- fit -------------------------------------------------------------------------------------------------


def _modules(t: Trainer) -> dict[str, nn.Module]:
    return {"model": t.model, **t.extra_modules}


def _capture(t: Trainer, state: Progress, ema: WeightAverage | None) -> dict:
    out = {"fingerprint": t.fingerprint, **state.state(),
           "modules": {k: m.state_dict() for k, m in _modules(t).items()},
           "optimizers": {k: o.state_dict() for k, o in t.optimizers.items()}}
    if ema is not None:
        out["ema"] = ema.module.state_dict()
    return out


def _restore(t: Trainer, state: Progress, ema: WeightAverage | None, ckpt: dict) -> None:
    for k, m in _modules(t).items():
        m.load_state_dict(ckpt["modules"][k])
    for k, o in t.optimizers.items():
        o.load_state_dict(ckpt["optimizers"][k])
    if ema is not None and "ema" in ckpt:
        ema.module.load_state_dict(ckpt["ema"])
    state.load(ckpt)


def _budget_steps(t: Trainer, state: Progress, ema: WeightAverage | None, run_step, t_start: float) -> int:
    """Measure the step rate on a few real steps, roll the state back, return the steps that fit.

    The probe steps are spread evenly over the nominal schedule, so a trainer whose phases cost differently
    (SRGAN: cheap pixel-loss pre-training, then VGG + discriminator steps) is measured in proportion.
    """
    cfg = t.cfg
    snapshot = copy.deepcopy(_capture(t, state, ema))
    probe = Plan(total=cfg.steps, nominal=cfg.steps)
    warm = max(4, min(20, cfg.steps // 20))
    at = [k * cfg.steps // warm for k in range(warm)]
    phases_seen: set[int] = set()
    elapsed = 0.0
    for i in at:
        phase = t.phase(i, probe)
        if phase not in phases_seen:  # a phase's first step pays for allocations and kernel selection
            phases_seen.add(phase)
            run_step(i, probe)
        t0 = time.perf_counter()
        run_step(i, probe)
        elapsed += time.perf_counter() - t0
    per_step = elapsed / warm
    per_val = 0.0
    if t.validate is not None and t.ctx.is_main:
        t1 = time.perf_counter()
        t.validate(ema.module if ema is not None else t.model)
        per_val = time.perf_counter() - t1
        t.model.train()
    per_ckpt = 0.0
    if t.ctx.is_main:  # checkpoints are fsynced: on a slow disk they cost as much as many steps
        probe_file = t.out_dir / "checkpoints" / "budget_probe.pt"
        t2 = time.perf_counter()
        durable_save(_capture(t, state, ema), probe_file)
        per_ckpt = time.perf_counter() - t2
        probe_file.unlink()
    _restore(t, state, ema, snapshot)
    left = cfg.time_budget_s - (time.perf_counter() - t_start) - per_val - per_ckpt  # the last ones
    per_step_all = per_step + per_val / cfg.val_every + per_ckpt / cfg.checkpoint_every
    steps = max(1, int(left / per_step_all))
    if t.ctx.enabled:  # every rank must run the same count: the slowest rank decides
        n = torch.tensor([steps], dtype=torch.int64, device=t.ctx.device)  # NCCL takes no CPU tensors
        torch.distributed.all_reduce(n, op=torch.distributed.ReduceOp.MIN)
        steps = int(n)
    log.info("%s: time budget %.0f s at %.1f ms/step (validation and checkpoints included) -> %d steps "
             "(schedule compressed from %d)", t.name, cfg.time_budget_s, per_step_all * 1e3, steps, cfg.steps)
    return steps


def fit(t: Trainer, *, tracking: TrackingConfig | None = None, tracking_root: Path | None = None,
        progress: bool = True, stop_after: int | None = None) -> FitResult:
    """Train ``t`` to its step budget (resuming from ``out_dir/checkpoints``); write the outputs.

    ``stop_after`` ends this call after that many steps, as an interruption would (tests). ``tracking_root``
    None disables MLflow.
    """
    cfg, ctx, out_dir = t.cfg, t.ctx, t.out_dir
    device = next(t.model.parameters()).device
    choice = _training_precision(getattr(cfg, "precision", "fp32"), device, ctx)
    t_start = time.perf_counter()  # after auto's once-per-machine measurement: not part of a time budget
    log.info("%s: training precision %s (%s)", t.name, choice.precision, choice.reason)
    if choice.precision != "fp32":  # a checkpoint of one precision never resumes a run of another
        t = dataclasses.replace(t, fingerprint=fingerprint(t.fingerprint, choice.precision))
    amp = MixedPrecision(choice.precision, device)
    prefetch = getattr(cfg, "prefetch", "off")
    state = Progress(t.n_items, cfg.batch_size, t.seed, amp,
                     prefetch=prefetch == "on" or (prefetch == "auto" and device.type == "cuda"))
    ema = WeightAverage(t.model, cfg.ema) if cfg.ema else None
    ckpt_dir = out_dir / "checkpoints"
    ckpt_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"

    ckpt = load_checkpoint(ckpt_path)
    if ckpt is not None and ckpt.get("fingerprint") == t.fingerprint and "modules" in ckpt:
        _restore(t, state, ema, ckpt)
        log.info("resuming %s from step %d (%s)", t.name, state.step, ckpt_path)
    elif ckpt is not None:
        log.info("ignoring %s: it was made with a different configuration", ckpt_path)
    best_state = None
    if state.best["step"] is not None and best_path.is_file():
        best_ckpt = read_checkpoint(best_path)
        best_state = best_ckpt["model"] if best_ckpt is not None else None
        if best_state is None:  # the best weights are gone: validation restarts the choice
            state.best = {"step": None, "value": None}

    def run_step(step: int, plan: Plan) -> dict[str, Tensor]:
        set_lr(t.optimizers, lr_factor(step, plan, cfg))
        before = amp.optimized
        with amp.autocast():
            losses = t.step(state, step, plan)
        if amp.scaler.is_enabled():
            if amp.optimized == before:
                raise RuntimeError(f"{t.name}: train.precision fp16 needs the step function to backward through "
                                   "state.optimize(loss, optimizer) (the gradient scaler); this one does not")
            amp.end_step()
        if ema is not None:
            ema.update(t.model, step)
        return losses

    if state.total is None:
        state.total = _budget_steps(t, state, ema, run_step, t_start) if cfg.time_budget_s else cfg.steps
        if cfg.time_budget_s and ctx.is_main:  # record the measured count at once: a rerun after a crash reuses it
            save_checkpoint(ckpt_path, _capture(t, state, ema))
    plan = Plan(total=state.total, nominal=cfg.steps)
    start, history = state.step, state.history
    exported_module = ema.module if ema is not None else t.model

    mlflow = None
    if tracking_root is not None and tracking is not None and ctx.is_main:
        import mlflow

        params = {**t.mlflow_params, "budget_steps": plan.total, "export": "best validation" if t.validate else "last",
                  "precision": choice.precision, "precision_reason": choice.reason}
        tags = {**t.mlflow_tags, "srstyle.fingerprint": t.fingerprint}
        state.run_id = start_mlflow_run(tracking, tracking_root, out_dir, t.name, state.run_id, start == 0, params, tags)

    def better(value: float) -> bool:
        old = state.best["value"]
        return old is None or (value > old if t.higher_is_better else value < old)

    t.model.train()
    end = plan.total if stop_after is None else min(plan.total, start + stop_after)
    state.start_clock()
    bar = tqdm(range(start, end), initial=start, total=plan.total, desc=f"train {t.name}",
               disable=not progress or not ctx.is_main)
    for step in bar:
        state.accumulate(run_step(step, plan))
        done = step + 1
        phase_ends = done < plan.total and t.phase(done, plan) != t.phase(step, plan)  # no row mixes phases
        if done % cfg.log_every == 0 or done == plan.total or phase_ends:
            sums, count = state.pop_sums()
            if ctx.enabled:  # the global batch's mean loss: sum the ranks' sums
                keys = sorted(sums)
                packed = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=ctx.device)
                torch.distributed.all_reduce(packed)
                sums = {k: float(v) / ctx.world_size for k, v in zip(keys, packed)}
            row = {"step": done, **{k: v / count for k, v in sums.items()},
                   "lr": t.optimizers[next(iter(t.optimizers))].param_groups[0]["lr"]}
            _watch_spikes(t, state, row, t.phase(step, plan))
            if ctx.is_main and t.validate is not None and (done % cfg.val_every == 0 or done == plan.total):
                row.update(t.validate(exported_module))
                t.model.train()
                value = row[t.monitor]
                if done > t.best_from(plan) and math.isfinite(value) and better(value):
                    state.best = {"step": done, "value": value}
                    best_state = _unwrapped_state(exported_module)
                    durable_save({"step": done, "value": value, "model": best_state}, best_path)
            history.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in (t.loss_key, t.monitor)})
            if mlflow is not None:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "step"}, step=done)
        if done % cfg.checkpoint_every == 0 or done == end:
            state.step = done
            if ctx.is_main:
                save_checkpoint(ckpt_path, _capture(t, state, ema))
    bar.close()
    state.close()
    state.step = end
    elapsed = time.perf_counter() - t_start
    if cfg.time_budget_s and start == 0 and end >= plan.total and elapsed > 1.25 * cfg.time_budget_s:
        # The step count stays as measured (a rerun with it reproduces the model); say why the clock did not.
        log.warning("%s: the %d steps fixed by the warm-up took %.0f s of a %.0f s time budget: the machine got "
                    "slower after the warm-up (other jobs?); the count is kept so the run stays reproducible",
                    t.name, plan.total, elapsed, cfg.time_budget_s)

    seconds = state.seconds
    val_rows = [r for r in history if t.monitor in r]
    result = FitResult(
        steps=end, finished=end >= plan.total, history=history, best_step=state.best["step"],
        best_value=state.best["value"], final_value=val_rows[-1][t.monitor] if val_rows else None,
        exported="best" if best_state is not None else ("ema" if ema is not None else "last"),
        loss_spikes=int(state.spikes["count"]),
        items_per_s=end * cfg.batch_size / seconds if seconds > 0 else 0.0,  # over every session
        seconds=seconds, run_id=state.run_id, loss_key=t.loss_key,
    )
    if not result.finished or not ctx.is_main:
        if mlflow is not None:
            mlflow.end_run(status="KILLED")
        return result

    if best_state is not None:
        t.model.load_state_dict(best_state)  # the exported weights (EMA ones when EMA is on)
    elif ema is not None:
        t.model.load_state_dict(ema.module.state_dict())
    t.model.eval()
    t.save_model(out_dir / "model.pt", t.model, plan.total)
    write_curve(out_dir / "curve.csv", history)
    last_row = next((r for r in reversed(history) if t.loss_key in r), {})
    finals = {f"final_{k.removeprefix('loss_')}": _round(v) for k, v in last_row.items()
              if k not in ("step", "lr", "loss_spikes") and not k.startswith("val_")}
    write_json({"steps": plan.total, "nominal_steps": plan.nominal, **finals,
                "final_loss": _round(last_row.get(t.loss_key, math.nan)),
                f"best_{t.monitor}": _round(result.best_value), f"final_{t.monitor}": _round(result.final_value),
                "best_step": result.best_step, "exported": result.exported, "loss_spikes": result.loss_spikes,
                "items_per_s": _round(result.items_per_s),
                "precision": choice.precision, "precision_reason": choice.reason,
                "seconds": _round(time.perf_counter() - t_start) if start == 0 else _round(result.seconds)},
               out_dir / "train_metrics.json")
    if mlflow is not None:
        metrics = {"loss_spikes": result.loss_spikes, "train_items_per_s": result.items_per_s}
        if result.best_value is not None:
            metrics.update({f"best_{t.monitor}": result.best_value, "best_step": result.best_step})
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"srstyle.exported_checkpoint": result.exported,
                         "srstyle.exported_step": str(result.best_step or plan.total)})
        mlflow.log_artifact(str(out_dir / "curve.csv"))
        if t.log_final is not None:
            t.log_final(mlflow, t.model, result)
        mlflow.end_run()
    return result


def _training_precision(requested: str, device: torch.device, ctx: DistContext) -> PrecisionChoice:
    """The precision of this training; under DDP rank 0 decides (measures, for auto) and every rank follows."""
    if not ctx.enabled:
        return resolve_precision(requested, device)
    choice = resolve_precision(requested, device) if ctx.is_main else None
    code = torch.tensor([PRECISIONS.index(choice.precision) if choice else -1], dtype=torch.int64, device=ctx.device)
    torch.distributed.broadcast(code, src=0)  # on the device: NCCL takes no CPU tensors
    return choice or PrecisionChoice(PRECISIONS[int(code)], f"rank 0's choice for train.precision={requested}")


def _round(v):
    return round(v, 6) if isinstance(v, float) and math.isfinite(v) else v


def _watch_spikes(t: Trainer, state: Progress, row: dict, phase: int) -> None:
    """A logged window's mean loss far above the running mean of the earlier ones starts a spike.

    One spike is one event: the windows that stay high after it (a run that diverged) do not count again and
    do not move the running mean, so the count says how often training blew up, and the log is not flooded.
    """
    loss = row.get(t.loss_key)
    spikes = state.spikes
    if loss is None or not math.isfinite(loss):
        if loss is not None:
            spikes["count"] += 1
            log.warning("%s: non-finite training loss at step %d", t.name, row["step"])
        row["loss_spikes"] = spikes["count"]
        return
    if spikes["phase"] != phase:
        spikes.update(phase=phase, reference=None, high_since=None)
    ref = spikes["reference"]
    if ref is not None and loss > t.cfg.spike_factor * ref:
        if spikes.get("high_since") is None:
            spikes["count"] += 1
            spikes["high_since"] = row["step"]
            log.warning("%s: loss spike at step %d: %.4g against a running mean of %.4g (x%.1f)", t.name,
                        row["step"], loss, ref, loss / ref)
    else:
        if spikes.get("high_since") is not None:
            log.info("%s: loss back under %.4g at step %d (high since step %d)", t.name, t.cfg.spike_factor * ref,
                     row["step"], spikes["high_since"])
            spikes["high_since"] = None
        spikes["reference"] = loss if ref is None else 0.8 * ref + 0.2 * loss
    row["loss_spikes"] = spikes["count"]


__all__ = ["FitResult", "Plan", "Progress", "Trainer", "clip_gradients", "durable_save", "fingerprint", "fit",
           "load_checkpoint", "lr_factor", "make_optimizer", "save_checkpoint", "seed_everything", "select_device",
           "write_curve"]
