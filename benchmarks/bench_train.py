"""Training speed: the project's trainer beside a bare loop, in fp32 and bf16, in one run.

For each case (ESPCN x3, EDSR baseline x4, EDSR paper x4 at LR 48, SRGAN x4) it times

* the project's trainer: ``srstyle.train.sr.supervised_trainer`` / ``srgan_trainer`` run by the skeleton
  (``srstyle.train.loop.fit``: sampler, patch-store batches, schedule, logging, a checkpoint; MLflow off, the
  end-of-run validation left out so that only training is timed), and
* a bare loop: the same network, optimiser, loss, batch size and precision, with the training patches
  already on the device as float tensors (random batches drawn there), nothing else,

and prints steps/s, trainer/bare (how much of the hardware's speed the trainer gives) and bf16/fp32. Both
loops start cold and run the same number of steps.

    python benchmarks/bench_train.py --small          # 2 CPU cores, demo widths, < 3 minutes
    python benchmarks/bench_train.py                  # one GPU: the published widths and patch sizes
    python benchmarks/bench_train.py --quality        # final validation PSNR, fp32 vs bf16 at equal steps

The data are the embedded photos (fetched, validated and cut into patch stores under ``--work`` once).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from srstyle.config import parse_params  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    model: str
    scale: int
    kwargs: dict
    hr_size: int
    batch: int
    steps: int
    recipe: dict = dataclasses.field(default_factory=dict)


def cases(small: bool) -> list[Case]:
    demo_espcn = {"channels": [64, 32], "kernels": [5, 3, 3], "activation": "relu"}
    if small:  # params.yaml's demo widths: what the CPU demo trains
        edsr = {"config": "baseline", "blocks": 4, "channels": 32, "residual": "bicubic"}
        return [
            Case("espcn_x3 demo", "espcn", 3, demo_espcn, 96, 16, 60, {"lr": 0.005}),
            Case("edsr_x4 demo 4x32 LR24", "edsr", 4, edsr, 96, 16, 16, {"lr": 5e-4, "loss": "l1"}),
            Case("edsr_x4 demo 4x32 LR48", "edsr", 4, edsr, 192, 16, 6, {"lr": 5e-4, "loss": "l1"}),
            Case("srgan_x4 demo 4x32 vgg54", "srgan", 4, {"blocks": 4, "channels": 32, "residual": "bicubic"}, 96, 8, 3,
                 {"lr": 5e-4, "content_loss": "vgg54"}),
        ]
    return [
        Case("espcn_x3 demo", "espcn", 3, demo_espcn, 96, 16, 2000, {"lr": 0.005}),
        Case("edsr_x4 baseline 16x64 LR24", "edsr", 4, {"config": "baseline"}, 96, 16, 500, {"lr": 1e-4, "loss": "l1"}),
        Case("edsr_x4 paper 32x256 LR48", "edsr", 4, {"config": "paper"}, 192, 16, 150, {"lr": 1e-4, "loss": "l1"}),
        Case("srgan_x4 16x64 vgg54", "srgan", 4, {"blocks": 16, "channels": 64}, 96, 16, 200,
             {"lr": 1e-4, "content_loss": "vgg54"}),
    ]


# --- data -----------------------------------------------------------------------------------------------


def patch_stores(work: Path, hr_size: int, scales: list[int], modes: list[str]) -> Path:
    """The embedded photos cut into stores of ``hr_size`` patches (built once under ``work``)."""
    from srstyle.data.fetch import fetch
    from srstyle.data.patches import make_patches
    from srstyle.data.validate import validate

    out = work / f"patches_hr{hr_size}"
    params = parse_params({"patches": {"hr_size": hr_size, "stride": hr_size // 2, "scales": scales, "modes": modes}})
    if all((out / split / f"{m}_x{s}" / "index.json").is_file() for split in ("train", "val") for m in modes for s in scales):
        return out
    raw, validated = work / "raw", work / f"validated_{hr_size}"
    if not (raw / "manifest.json").is_file() and not any(raw.glob("*")):
        fetch(params.data, raw, work / "downloads")
    if not (validated / "manifest.json").is_file():
        validate(raw, validated, work / f"quarantine_{hr_size}", params.validate_, min_side=hr_size)
    make_patches(validated, raw, out, params.patches, params.seed, params.validate_.max_pixels, progress=False)
    return out


def case_params(case: Case, precision: str, device: str, steps: int | None = None, **train):
    return parse_params({
        "runs": {"bench": {"model": case.model, "scale": case.scale, "batch_size": case.batch, "precision": precision,
                           "steps": steps or case.steps, "device": device, **case.recipe, **train}},
        "train": {"warmup_steps": 0, "log_every": 10, "checkpoint_every": 10**9, "val_every": 10**9},
        "models": {case.model: case.kwargs},
        "patches": {"hr_size": case.hr_size, "stride": case.hr_size // 2, "scales": [case.scale],
                    "modes": ["y" if case.model == "espcn" else "rgb"]},
        "perceptual": {"allow_random_init": True},  # speed does not depend on the VGG's weights
    })


# --- the two loops ----------------------------------------------------------------------------------------


def trainer_rate(case: Case, precision: str, device: str, patches: Path, work: Path) -> float:
    """Steps/s of the project's trainer over ``case.steps`` steps (the skeleton's own loop timer)."""
    import shutil

    from srstyle.train.distributed import DistContext
    from srstyle.train.loop import fit
    from srstyle.train.sr import supervised_trainer
    from srstyle.train.srgan import srgan_trainer

    out = work / "runs" / f"{case.model}_{case.hr_size}_{precision}"
    shutil.rmtree(out, ignore_errors=True)
    params = case_params(case, precision, device, pretrain_steps=0)
    if case.model == "srgan":
        t = srgan_trainer(params, "bench", patches, out)
    else:
        t = supervised_trainer(params, "bench", patches, out, DistContext(device=torch.device(device)))
    t = dataclasses.replace(t, validate=None, log_final=None)  # the training loop alone
    result = fit(t, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return result.steps / result.seconds


def bare_rate(case: Case, precision: str, device: str, patches: Path) -> float:
    """Steps/s of a plain loop: same network, optimiser, loss, batch and precision, data resident on the device."""
    from srstyle.data.datasets import PatchStore
    from srstyle.data.patches import store_name
    from srstyle.losses import content_loss, discriminator_loss, generator_adversarial_loss
    from srstyle.models import MODELS, build_model
    from srstyle.models.sr.discriminator import SRGANDiscriminator
    from srstyle.train.loop import make_optimizer
    from srstyle.train.sr import LOSSES, model_input

    params = case_params(case, precision, device)
    cfg = params.run("bench").train
    dev = torch.device(device)
    cls = MODELS.get(case.model)
    store = PatchStore(patches / "train" / store_name(cls.color, case.scale))
    n = min(len(store), 512)
    lr_all, hr_all = store.batch(torch.arange(n).numpy())
    cl = torch.channels_last
    lr_all, hr_all = lr_all.to(dev, memory_format=cl), hr_all.to(dev, memory_format=cl)
    torch.manual_seed(0)
    net = build_model(case.model, case.scale, **case.kwargs).to(dev, memory_format=cl)
    opt = make_optimizer(net.parameters(), cfg)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")

    def autocast():
        return torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None)

    if case.model == "srgan":
        disc = SRGANDiscriminator(patch_size=case.hr_size).to(dev, memory_format=cl)
        d_opt = make_optimizer(disc.parameters(), cfg)
        content = content_loss(cfg.content_loss, None, True).to(dev, memory_format=cl)

    def step() -> None:
        idx = torch.randint(0, n, (case.batch,), device=dev)
        lr, hr = lr_all[idx], hr_all[idx]
        if case.model != "srgan":
            with autocast():
                loss = LOSSES[cfg.loss](net(model_input(lr, cls.input_kind, case.scale)), hr)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
        else:
            with autocast():
                sr = net(lr)
                d_loss = discriminator_loss(disc(hr), disc(sr.detach()))
            d_opt.zero_grad(set_to_none=True)
            scaler.scale(d_loss).backward()
            scaler.step(d_opt)
            with autocast():
                g_loss = content(sr, hr) + cfg.adversarial_weight * generator_adversarial_loss(disc(sr))
            opt.zero_grad(set_to_none=True)
            scaler.scale(g_loss).backward()
            scaler.step(opt)
        scaler.update()

    t0 = time.perf_counter()
    for _ in range(case.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return case.steps / (time.perf_counter() - t0)


# --- quality: equal steps, fp32 vs bf16 -------------------------------------------------------------------


def quality(work: Path, device: str, runs: list[str]) -> None:
    """The demo recipes of params.yaml (their steps, no time budget), trained in fp32 and in bf16."""
    import yaml

    from srstyle.train.sr import train_sr

    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for run in runs:
        spec = {k: v for k, v in raw["runs"][run].items() if k != "time_budget_s"}
        patches = patch_stores(work, raw["patches"]["hr_size"], raw["patches"]["scales"], raw["patches"]["modes"])
        out = {}
        for precision in ("fp32", "bf16"):
            params = parse_params({**raw, "runs": {run: {**spec, "precision": precision}},
                                   "train": {**raw["train"], "device": device}})
            folder = work / "quality" / f"{run}_{precision}"
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            r = train_sr(params, run, patches, folder, progress=False)
            out[precision] = r
            print(f"{run} {precision}: {r.steps} steps, {r.steps * params.run(run).train.batch_size / r.patches_per_s:.1f} s "
                  f"of training, best val PSNR {r.best_val_psnr:.3f} dB, final {r.final_val_psnr:.3f} dB", flush=True)
        print(f"{run}: bf16 - fp32 final val PSNR {out['bf16'].final_val_psnr - out['fp32'].final_val_psnr:+.3f} dB, "
              f"best {out['bf16'].best_val_psnr - out['fp32'].best_val_psnr:+.3f} dB", flush=True)


def cpu_flags() -> str:
    try:
        out = subprocess.run(["grep", "-o", r"amx_bf16\|avx512_bf16\|avx512_vnni\|avx2", "/proc/cpuinfo"],
                             capture_output=True, text=True).stdout.split()
        return " ".join(sorted(set(out))) or "none of avx2/avx512_bf16/avx512_vnni/amx_bf16"
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="2 CPU cores: demo widths, few steps (< 3 min)")
    parser.add_argument("--quality", nargs="*", metavar="RUN",
                        help="train these params.yaml runs (default espcn_x3 edsr_x4) in fp32 and bf16 at equal steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--only", nargs="*", help="case names containing these words")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "srstyle_bench_train")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import logging

    logging.basicConfig(level=logging.WARNING)
    dev = args.device
    where = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU ({cpu_flags()}), {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {where}; load {os.getloadavg()[0]:.2f}", flush=True)
    if not dev.startswith("cuda"):  # what train.precision=auto measures on this CPU (its probe net)
        from srstyle.train.precision import BF16_MIN_SPEEDUP, measure_cpu_bf16

        probe = measure_cpu_bf16()
        nets = "; ".join(f"{k}: fp32 {probe[k]['fp32_steps_per_s']} steps/s, bf16 {probe[k]['bf16_steps_per_s']}, "
                         f"{probe[k]['speedup']}x" for k in ("espcn", "edsr"))
        print(f"auto's probe ({nets}): bf16/fp32 {probe['speedup']} (bf16 at >= {BF16_MIN_SPEEDUP}; load "
              f"{probe['load']} on {probe['cpus']} CPUs)", flush=True)
    if args.quality is not None:
        quality(args.work, dev, args.quality or ["espcn_x3", "edsr_x4"])
        return
    t_start = time.perf_counter()
    rows = []
    for case in cases(args.small):
        if args.only and not any(w in case.name for w in args.only):
            continue
        patches = patch_stores(args.work, case.hr_size, [case.scale], ["y" if case.model == "espcn" else "rgb"])
        rates = {}
        for precision in args.precisions:
            project = trainer_rate(case, precision, dev, patches, args.work)
            bare = bare_rate(case, precision, dev, patches)
            rates[precision] = (project, bare)
            print(f"{case.name:30s} {precision}: trainer {project:8.2f} steps/s   bare {bare:8.2f} steps/s   "
                  f"trainer/bare {project / bare:.2f}", flush=True)
        rows.append((case, rates))
    print(f"\nbatch = case batch; {'demo widths, ' if args.small else ''}steps per timing = case steps; "
          f"load {os.getloadavg()[0]:.2f}; {time.perf_counter() - t_start:.0f} s")
    print(f"{'case':30s} " + " ".join(f"{p + ' trainer/bare':>18s}" for p in args.precisions)
          + ("   bf16/fp32 trainer   bf16/fp32 bare" if {"fp32", "bf16"} <= set(args.precisions) else ""))
    for case, rates in rows:
        line = f"{case.name:30s} " + " ".join(f"{rates[p][0] / rates[p][1]:18.2f}" for p in args.precisions)
        if {"fp32", "bf16"} <= set(rates):
            line += f"   {rates['bf16'][0] / rates['fp32'][0]:17.2f}   {rates['bf16'][1] / rates['fp32'][1]:14.2f}"
        print(line)


if __name__ == "__main__":
    main()
