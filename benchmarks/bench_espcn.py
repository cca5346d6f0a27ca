"""ESPCN x3 speed, in one run: 640x360 -> 1920x1080 Y frame with torch and onnxruntime, and training throughput.

Prints milliseconds per frame (median of repeats), the torch/onnxruntime ratio, the achieved GFLOP/s against
this machine's measured fp32 matmul rate, and training patches/s on the patch-store batch shape. The
network is the one params.yaml trains (``models.espcn``), randomly initialised: speed does not depend on
the weights.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from srstyle.export.onnx import export_sr_onnx
from srstyle.models import build_model


def timed(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    return 2 * n**3 / timed(lambda: a @ b, repeats) / 1e9


def espcn_flops(model: torch.nn.Module, h: int, w: int) -> float:
    macs = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d)) * h * w
    return 2.0 * macs


def demo_params(**train):
    """params.yaml's ESPCN x3 run (its recipe and network), or the schema defaults outside a project."""
    import yaml

    from srstyle.config import parse_params

    path = Path("params.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return parse_params({**raw, "runs": {"espcn_x3": {"model": "espcn", "scale": 3}}, "train": {**raw.get("train", {}), **train}})


def training_loop_rate(patches: Path, steps: int) -> float:
    """Patches/s of the real training step (srstyle.train.sr) on the patch store, default ESPCN x3 recipe."""
    from srstyle.train.distributed import DistContext
    from srstyle.train.loop import Plan, Progress, lr_factor, set_lr
    from srstyle.train.sr import supervised_trainer

    params = demo_params(steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        t = supervised_trainer(params, "espcn_x3", patches, Path(tmp), DistContext())
        state, plan = Progress(t.n_items, t.cfg.batch_size, 0), Plan(steps, steps)

        def one(i=[0]):
            set_lr(t.optimizers, lr_factor(i[0], plan, t.cfg))
            state.accumulate(t.step(state, i[0], plan))
            i[0] += 1

        return t.cfg.batch_size / timed(one, steps, warmup=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--store", default="data/patches", help="patch folder (the training-loop rate); '' to skip")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    h, w, scale = 360, 640, 3
    kwargs = demo_params().model_kwargs("espcn")
    model = build_model("espcn", scale, **kwargs).eval()
    x = torch.rand(1, 1, h, w)
    flops = espcn_flops(model, h, w)
    peak = matmul_gflops()

    with torch.inference_mode():
        torch_s = timed(lambda: model(x), args.repeats)

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = export_sr_onnx(model, Path(tmp) / "espcn_x3.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {"lr": x.numpy()}
        ort_s = timed(lambda: session.run(None, feed), args.repeats)
        out = session.run(None, feed)[0]
    assert out.shape == (1, 1, h * scale, w * scale)

    # Training throughput: the default patch shape (LR 32x32 for x3, batch 16), Adam, MSE. fwd+bwd FLOPs, as
    # done: forward + weight gradients (= 2x the forward) + input gradients of every conv but the first (the
    # image needs none); the usual "3x forward" would credit work never done (7% more here).
    batch = args.batch
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    train_flops = (3 * espcn_flops(model, 32, 32) - 2.0 * first_conv.weight.numel() * 32 * 32) * batch
    rates = {}
    for fmt, memory_format in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        train_model = build_model("espcn", scale, **kwargs).train().to(memory_format=memory_format)
        opt = torch.optim.Adam(train_model.parameters(), lr=1e-3)
        lr_b = torch.rand(batch, 1, 32, 32).contiguous(memory_format=memory_format)
        hr_b = torch.rand(batch, 1, 96, 96)

        def fwd_bwd():
            loss = torch.nn.functional.mse_loss(train_model(lr_b), hr_b)
            train_model.zero_grad(set_to_none=True)
            loss.backward()

        def step():
            fwd_bwd()
            opt.step()

        rates[fmt] = (timed(fwd_bwd, args.train_steps, warmup=3), timed(step, args.train_steps, warmup=3))
    store_rate = training_loop_rate(Path(args.store), args.train_steps) if args.store else None

    print(f"machine: {torch.get_num_threads()} torch threads, fp32 matmul {peak:.1f} GFLOP/s")
    print(f"ESPCN x3 {kwargs}, 640x360 -> 1920x1080 Y frame: {flops / 1e9:.2f} GFLOP")
    print(f"  torch eager       {torch_s * 1e3:8.1f} ms/frame  {flops / torch_s / 1e9:6.1f} GFLOP/s  ({flops / torch_s / 1e9 / peak:.2f} of matmul)")
    print(f"  onnxruntime fp32  {ort_s * 1e3:8.1f} ms/frame  {flops / ort_s / 1e9:6.1f} GFLOP/s  ({flops / ort_s / 1e9 / peak:.2f} of matmul)")
    print(f"  onnxruntime speed-up over torch: {torch_s / ort_s:.2f}x")
    for fmt, (fb_s, step_s) in rates.items():
        print(f"training fwd+bwd ({fmt:13s}) batch {batch} of 32x32 LR: {fb_s * 1e3:6.1f} ms  "
              f"{train_flops / fb_s / 1e9:6.1f} GFLOP/s ({train_flops / fb_s / 1e9 / peak:.2f} of matmul);  "
              f"with Adam {batch / step_s:5.0f} patches/s")
    if store_rate is not None:
        print(f"the trainer's own step from the patch store (sampling, augmentation, copy, schedule): {store_rate:.0f} patches/s")
    import os

    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
