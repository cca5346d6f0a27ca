"""Training precision (``train.precision``): fp32, or autocast to bf16 / fp16 around each step's forward pass
and loss, fp16 with a gradient scaler. Weights, optimiser state, validation, checkpoints and exports stay fp32.

``auto`` picks bf16 on CUDA GPUs that support it. On a CPU it depends on the chip: with AMX-BF16 bf16 autocast
made fwd+bwd+Adam 2.4-3.3x faster than fp32, on an AMD EPYC with AVX512-BF16 it was 0.7-1.1x (EDSR slower).
So ``auto`` measures once per machine (a short timed fwd+bwd+Adam of two small nets shaped like the demo's
ESPCN and EDSR, in both precisions), caches the result in a small JSON file keyed by CPU model, CPU flags,
torch version and thread count, and picks bf16 only when it is clearly faster for both nets
(``BF16_MIN_SPEEDUP``). A measurement taken on a busy machine (load above 1.5x its CPUs: timings there were
seen 2-10x off) is not trusted: fp32, and nothing cached. Every choice comes with its reason, which the skeleton logs
to MLflow and writes to ``train_metrics.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..io import write_json

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# A bf16 step must be this much faster than fp32 for `auto` to give up fp32 on a CPU: below it, the
# rounding of bf16 (8 mantissa bits) is not worth a speed-up that noise could have made up.
BF16_MIN_SPEEDUP = 1.3
CACHE_ENV = "SRSTYLE_PRECISION_CACHE"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str   # fp32 | bf16 | fp16
    reason: str


# --- auto: decide per machine --------------------------------------------------------------------------------


def cache_file() -> Path:
    """Where the per-machine measurement is kept: $SRSTYLE_PRECISION_CACHE, else the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "srstyle" / "train_precision.json"


def _cpuinfo() -> tuple[str, str]:
    """(model name, feature flags) of the first CPU in /proc/cpuinfo; platform's name elsewhere."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.strip()
                if model and flags:
                    break
    except OSError:  # not Linux
        pass
    return model or platform.processor() or platform.machine(), flags


def machine_key() -> str:
    """CPU model + a hash of its feature flags + torch version (which bf16 kernels run) + torch threads (the
    ratio is not the same on one core as on several)."""
    model, flags = _cpuinfo()
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    return f"{model} | flags {digest} | torch {torch.__version__} | {torch.get_num_threads()} threads"


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


def _probe_nets() -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """Two small nets shaped like the demo's SR models, with their batches: an ESPCN (Y, 5x5 64 + 3x3 32
    channels, x3) and an EDSR (RGB, 32 channels, residual blocks, x2 pixel shuffle)."""
    torch.manual_seed(0)
    cl = torch.channels_last
    espcn = nn.Sequential(nn.Conv2d(1, 64, 5, padding=2), nn.ReLU(), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(32, 9, 3, padding=1), nn.PixelShuffle(3))
    edsr = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), _ResBlock(32), _ResBlock(32),
                         nn.Conv2d(32, 12, 3, padding=1), nn.PixelShuffle(2))
    return [(espcn.to(memory_format=cl), torch.rand(16, 1, 32, 32).contiguous(memory_format=cl),
             torch.rand(16, 1, 96, 96).contiguous(memory_format=cl)),
            (edsr.to(memory_format=cl), torch.rand(16, 3, 24, 24).contiguous(memory_format=cl),
             torch.rand(16, 3, 48, 48).contiguous(memory_format=cl))]


def measure_cpu_bf16(steps: int = 4, rounds: int = 3) -> dict:
    """fwd+bwd+Adam steps/s of the probe nets in fp32 and in bf16 autocast (interleaved rounds, the best of
    each); ``speedup`` is the smaller of the two nets' (bf16 must pay off for both kinds of model).

    The RNG state is restored afterwards: measuring must not change the training that follows."""
    rng = torch.get_rng_state()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    out = {}
    try:
        for name, (net, x, y) in zip(("espcn", "edsr"), _probe_nets()):
            opt = torch.optim.Adam(net.parameters(), lr=1e-4)

            def run(bf16: bool, n: int) -> float:
                t0 = time.perf_counter()
                for _ in range(n):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        loss = nn.functional.mse_loss(net(x), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                return time.perf_counter() - t0

            run(False, 1), run(True, 1)  # first calls pick kernels and allocate
            best = {"fp32": float("inf"), "bf16": float("inf")}
            for _ in range(rounds):
                best["fp32"] = min(best["fp32"], run(False, steps))
                best["bf16"] = min(best["bf16"], run(True, steps))
            out[name] = {"fp32_steps_per_s": round(steps / best["fp32"], 2),
                         "bf16_steps_per_s": round(steps / best["bf16"], 2),
                         "speedup": round(best["fp32"] / best["bf16"], 3)}
    finally:
        torch.set_rng_state(rng)
    return {**out, "speedup": min(v["speedup"] for v in out.values()), "threads": torch.get_num_threads(),
            "load": round(max(load, os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0), 2),
            "cpus": os.cpu_count() or 1, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def busy(entry: dict) -> bool:
    """A measurement taken while the machine ran other work (1-min load above 1.5x its CPUs) is noise."""
    return float(entry.get("load", 0.0)) > 1.5 * int(entry.get("cpus", os.cpu_count() or 1))


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # unreadable or half-written by a foreign tool: measure again
        log.warning("%s: unreadable precision cache (%s); measuring again", path, exc)
        return {}


_BUSY: dict[tuple[Path, str], dict] = {}


def cpu_bf16_measurement(measure: Callable[[], dict] = measure_cpu_bf16) -> tuple[dict, bool]:
    """This machine's measurement from the cache, or measured now and cached (atomic write): (entry, cached)."""
    path, key = cache_file(), machine_key()
    entry = _read_cache(path).get(key)
    if isinstance(entry, dict) and "speedup" in entry:
        return entry, True
    if (path, key) in _BUSY:  # this process measured on a busy machine already: once is enough
        return _BUSY[(path, key)], False
    entry = measure()
    if busy(entry):  # not written to the cache: measured again by the next process, on a quieter machine
        _BUSY[(path, key)] = entry
        return entry, False
    try:
        cache = _read_cache(path)  # re-read: another process may have added its own machine meanwhile
        cache[key] = entry
        write_json(cache, path)
    except OSError as exc:  # a read-only home: the choice still holds for this process
        log.warning("could not cache the precision measurement in %s (%s); set %s to a writable file",
                    path, exc, CACHE_ENV)
    return entry, False


def resolve_precision(requested: str, device: torch.device, setting: str = "train.precision") -> PrecisionChoice:
    """The precision a training runs at: ``requested`` checked against the device, or ``auto`` decided.
    ``setting`` names the parameter in messages (Gatys optimisation has its own, ``style.gatys.precision``)."""
    if requested not in (*PRECISIONS, "auto"):
        raise ValueError(f"{setting}: {requested!r} is not one of auto, fp32, bf16, fp16")
    cuda = device.type == "cuda"
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{setting} is bf16 but {torch.cuda.get_device_name(device)} has no bf16 support; "
                         "use fp16 (with its gradient scaler), fp32 or auto")
    if requested != "auto":
        return PrecisionChoice(requested, f"set in {setting}")
    if cuda:
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", f"auto: {name} supports bf16")
        return PrecisionChoice("fp32", f"auto: {name} has no bf16 support")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"auto: fp32 on {device.type}")
    entry, cached = cpu_bf16_measurement()
    speedup = float(entry["speedup"])
    if busy(entry):
        return PrecisionChoice("fp32", f"auto: the machine was busy (load {entry['load']} on {entry['cpus']} CPUs) "
                                       f"while measuring bf16 ({speedup:.2f}x fp32, not trusted, not cached): fp32")
    verdict = "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
    how = "cached measurement" if cached else "measured now"
    log.info("bf16 on this CPU: %s (%s, %s)", entry, how, cache_file())
    # the reason goes into train_metrics.json (a DVC output): no path of this machine in it
    return PrecisionChoice(verdict, f"auto: bf16 autocast {speedup:.2f}x fp32 on this CPU "
                                    f"({'>=' if verdict == 'bf16' else '<'} {BF16_MIN_SPEEDUP}x; {how})")


# --- the step at that precision --------------------------------------------------------------------------


class MixedPrecision:
    """Autocast for a step's forward pass and loss, and the backward + optimiser step that goes with it.

    Step functions call :meth:`optimize` (through ``Progress.optimize``) instead of ``loss.backward();
    optimizer.step()``: in fp16 the loss is scaled before backward and the gradients unscaled before clipping
    and the step (a step with inf/NaN gradients is skipped, the scale lowered); in fp32/bf16 it is exactly
    zero_grad, backward, clip, step. The scaler's state is part of the training state (checkpointed)."""

    def __init__(self, precision: str = "fp32", device: torch.device | str = "cpu"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: one of {PRECISIONS}")
        self.precision = precision
        self.device_type = torch.device(device).type
        self.dtype = DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=precision == "fp16")
        self.optimized = 0  # optimize() calls: fp16 checks that a step went through the scaler

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def optimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                 clip: Callable[[], None] | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        # Backward outside autocast (each op's backward runs in the dtype its forward used anyway)
        with torch.autocast(self.device_type, enabled=False) if self.dtype is not None else contextlib.nullcontext():
            self.scaler.scale(loss).backward()
            if clip is not None:
                self.scaler.unscale_(optimizer)  # clip true gradients, not scaled ones
                clip()
            self.scaler.step(optimizer)
        self.optimized += 1

    def end_step(self) -> None:
        """After a step's last optimiser step: the scaler adapts its scale once per iteration."""
        self.scaler.update()

    def state_dict(self) -> dict:
        return {"precision": self.precision, "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


__all__ = ["BF16_MIN_SPEEDUP", "MixedPrecision", "PRECISIONS", "PrecisionChoice", "cache_file", "machine_key",
           "measure_cpu_bf16", "resolve_precision"]
