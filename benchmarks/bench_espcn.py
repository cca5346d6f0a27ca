"""ESPCN x3 speed, in one run: 640x360 -> 1920x1080 Y frame with torch and onnxruntime, and training throughput.

Prints milliseconds per frame (median of repeats), the torch/onnxruntime ratio, the achieved GFLOP/s against
this machine's measured fp32 matmul rate, and training patches/s on the patch-store batch shape. Uses a
randomly initialised model: speed does not depend on the weights.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=30)
    args = parser.parse_args()

    torch.manual_seed(0)
    h, w, scale = 360, 640, 3
    model = build_model("espcn", scale).eval()
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

    # Training throughput: the default patch shape (LR 32x32 for x3, batch 16), Adam, MSE.
    train_model = build_model("espcn", scale).train()
    opt = torch.optim.Adam(train_model.parameters(), lr=1e-3)
    lr_b, hr_b = torch.rand(16, 1, 32, 32), torch.rand(16, 1, 96, 96)

    def step():
        loss = torch.nn.functional.mse_loss(train_model(lr_b), hr_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step_s = timed(step, args.train_steps, warmup=3)

    print(f"machine: {torch.get_num_threads()} torch threads, fp32 matmul {peak:.1f} GFLOP/s")
    print(f"ESPCN x3, 640x360 -> 1920x1080 Y frame: {flops / 1e9:.2f} GFLOP")
    print(f"  torch eager       {torch_s * 1e3:8.1f} ms/frame  {flops / torch_s / 1e9:6.1f} GFLOP/s  ({flops / torch_s / 1e9 / peak:.2f} of matmul)")
    print(f"  onnxruntime fp32  {ort_s * 1e3:8.1f} ms/frame  {flops / ort_s / 1e9:6.1f} GFLOP/s  ({flops / ort_s / 1e9 / peak:.2f} of matmul)")
    print(f"  onnxruntime speed-up over torch: {torch_s / ort_s:.2f}x")
    print(f"training: {16 / step_s:.0f} patches/s (batch 16 of 32x32 LR -> 96x96 HR, Adam, MSE; {step_s * 1e3:.1f} ms/step)")


if __name__ == "__main__":
    main()
