"""Models and servers for the service tests: briefly *trained* nets exported to ONNX (outputs inside the image
range, so a colour or tile mix-up changes the reply), and `bentoml serve` of the real service in a subprocess."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import fit_briefly, photo
from tests.servers import free_port, server

REPO = Path(__file__).resolve().parents[1]
STYLE = "test_style"


def rgb_sr_model(seed: int = 0):
    """A tiny EDSR x3 (an RGB model) fitted briefly to synthetic LR/HR pairs."""
    import torch

    from srstyle.models import build_model
    from srstyle.resize import downscale_rgb

    hr = np.stack([photo(48, 48, seed=seed + i) for i in range(8)]).astype(np.float32) / 255
    lr = np.stack([downscale_rgb(photo(48, 48, seed=seed + i), 3) for i in range(8)]).astype(np.float32) / 255
    torch.manual_seed(seed)
    model = build_model("edsr", 3, blocks=1, channels=8)
    x, y = torch.tensor(lr).permute(0, 3, 1, 2), torch.tensor(hr).permute(0, 3, 1, 2)
    return fit_briefly(model, x, y, 60)


def style_net(seed: int = 0):
    """A tiny Johnson net fitted to a fixed colour transform of photos: a "style" whose outputs stay in range."""
    import torch

    from srstyle.models.style.transformer_net import TransformerNet

    x = torch.tensor(np.stack([photo(32, 32, seed=seed + i) for i in range(8)]), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    y = (x.flip(1) * 0.7 + 0.15).clamp(0, 1)  # channels swapped, contrast lowered
    torch.manual_seed(seed)
    return fit_briefly(TransformerNet(channels=4, residual_blocks=1), x, y, 60)


def export_models(out: Path, style_exports, *, rgb=False, sr_name="sr-x3") -> Path:
    """Write the service's model folder (SRSTYLE_SERVE_DIR layout: what `srstyle export-champions` writes): a
    briefly trained ESPCN x3, optionally an RGB EDSR x3, and copies of ``style_exports``' fast and meta graphs."""
    import shutil

    from srstyle.export.onnx import export_sr_onnx
    from tests.helpers import trained_espcn

    out.mkdir(parents=True, exist_ok=True)
    export_sr_onnx(trained_espcn(steps=120), out / f"{sr_name}.onnx")
    if rgb:
        export_sr_onnx(rgb_sr_model(), out / "edsr_x3.onnx")
    shutil.copy(style_exports.fast, out / f"style-{STYLE}.onnx")
    shutil.copy(style_exports.meta_dir / "metanet.onnx", out / "style-meta.onnx")
    shutil.copy(style_exports.meta_dir / "transformer.onnx", out / "style-meta.transformer.onnx")
    return out


def export_style_models(out: Path):
    """The style graphs of the suite: ``fast`` (``style_net`` exported for style STYLE, with ``fast_net``) and
    ``meta_dir`` (an untrained meta network at style size ``meta_size`` as metanet.onnx + transformer.onnx, with
    ``backbone`` and ``meta``). torch.export makes each export cost seconds, so a session makes them once."""
    from types import SimpleNamespace

    import torch

    from srstyle.export.style_onnx import export_fast, export_meta
    from srstyle.models.backbones import build_backbone
    from srstyle.models.style.metanet import META_TAPS
    from tests.helpers import untrained_meta_net

    out.mkdir(parents=True, exist_ok=True)
    fast_net = style_net().eval()
    export_fast(fast_net, out / f"fast_{STYLE}.onnx", atol=2e-3, metadata={"style": STYLE})
    torch.manual_seed(0)
    backbone = build_backbone("vgg16", list(META_TAPS))
    meta = untrained_meta_net(backbone, size=48)
    (out / "meta").mkdir(exist_ok=True)
    export_meta(meta, backbone, out / "meta", style_size=48, atol=2e-3)
    return SimpleNamespace(fast_net=fast_net, fast=out / f"fast_{STYLE}.onnx", backbone=backbone, meta=meta,
                           meta_dir=out / "meta", meta_size=48)


def encode(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def serve_env(tmp: Path, model_dir: Path | None, params: str = "", extra: dict | None = None) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "params.yaml").write_text(params or "serving:\n  max_pixels: 250000\n  max_request_bytes: 2000000\n  tile: 64\n")
    env = {**os.environ, "BENTOML_HOME": str(tmp / "bentoml"), "SRSTYLE_PARAMS": str(tmp / "params.yaml"),
           "SRSTYLE_ROOT": str(tmp), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(REPO / "src"),
           "TMPDIR": str(tmp / "tmp"), **(extra or {})}
    (tmp / "tmp").mkdir(exist_ok=True)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SRSTYLE_SERVE_DIR", None)
    if model_dir is not None:
        env["SRSTYLE_SERVE_DIR"] = str(model_dir)
    return env


def serve(tmp: Path, model_dir: Path | None, params: str = "", extra: dict | None = None, cwd: Path | None = None,
          target: str = "srstyle.serving.service:SRStyle", python: str = sys.executable):
    """Context manager: (url, process) of `bentoml serve` on 127.0.0.1, stopped (whole group) on exit."""
    port = free_port()
    env = serve_env(tmp, model_dir, params, extra)
    cmd = [python, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    return _Served(server(cmd, f"http://127.0.0.1:{port}/livez", tmp / "server.log", env=env, cwd=cwd or tmp),
                   f"http://127.0.0.1:{port}", tmp / "server.log")


class _Served:
    def __init__(self, ctx, url: str, log: Path):
        self.ctx, self.url, self.log = ctx, url, log

    def __enter__(self):
        self.proc, _ = self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


def wait_ready(url: str, timeout: float = 120) -> None:
    import time

    import httpx

    deadline = time.time() + timeout
    streak = 0  # every worker process loads its models: several answers in a row, on fresh connections
    while time.time() < deadline:
        streak = streak + 1 if httpx.get(f"{url}/readyz", timeout=5).status_code == 200 else 0
        if streak >= 10:
            return
        time.sleep(0.1 if streak else 0.3)
    raise TimeoutError(f"{url} not ready within {timeout} s")


def model_subset(model_dir: Path, out: Path, names: list[str]) -> Path:
    """A model folder with copies of some of ``model_dir``'s files (the session's, tests/conftest.py): what a
    test that serves fewer models, or changes its folder, gets instead of training and exporting its own."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(model_dir / name, out / name)
    return out
