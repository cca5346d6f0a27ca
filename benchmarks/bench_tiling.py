"""Peak memory and time of tiled vs whole-image inference on a 2000x2000 LR input (ESPCN x3, EDSR x2).

Each measurement runs in a fresh subprocess and reports its peak resident set size (ru_maxrss), so the
numbers are comparable side by side. The stated bound for tiled inference: peak RSS at most
(process baseline + input + output + 256 MiB), i.e. independent of the image size apart from its own
input and output arrays; whole-image inference holds every intermediate feature map of the full image.
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from srstyle.models import build_model
from srstyle.tiling import receptive_radius, run_tiled
name, scale, mode, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
torch.manual_seed(0)
kwargs = {"espcn": {}, "edsr": {"config": "baseline"}}[name]
model = build_model(name, scale, **kwargs).eval()
c = 1 if model.color == "y" else 3
r = receptive_radius(model, c)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
x = np.random.default_rng(0).random((1, c, size, size), dtype=np.float32)
run = lambda a: model(torch.from_numpy(a)).numpy()
t = time.perf_counter()
with torch.inference_mode():
    y = run(x) if mode == "whole" else run_tiled(run, x, scale, tile=256, overlap=r)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"model": name, "mode": mode, "radius": r, "seconds": seconds, "baseline_mib": baseline,
                  "peak_mib": peak, "io_mib": (x.nbytes + y.nbytes) / 2**20}))
"""


def measure(name: str, scale: int, mode: str, size: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, name, str(scale), mode, str(size)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2000, help="LR input side")
    parser.add_argument("--edsr-size", type=int, default=1000,
                        help="LR side for EDSR-baseline x2 (2000 takes ~4 min per mode on 2 cores and ~11 GiB whole)")
    args = parser.parse_args()
    print(f"tile 256 LR px, overlap = receptive radius; ESPCN on {args.size}^2, EDSR on {args.edsr_size}^2 LR inputs")
    for name, scale, size in (("espcn", 3, args.size), ("edsr", 2, args.edsr_size)):
        whole, tiled = measure(name, scale, "whole", size), measure(name, scale, "tiled", size)
        bound = tiled["baseline_mib"] + tiled["io_mib"] + 256
        print(f"{name} x{scale} (radius {tiled['radius']} px): whole {whole['peak_mib']:.0f} MiB in {whole['seconds']:.1f} s; "
              f"tiled {tiled['peak_mib']:.0f} MiB in {tiled['seconds']:.1f} s; tiled/whole memory "
              f"{tiled['peak_mib'] / whole['peak_mib']:.2f}; bound {bound:.0f} MiB -> "
              f"{'OK' if tiled['peak_mib'] <= bound else 'EXCEEDED'}")


if __name__ == "__main__":
    main()
