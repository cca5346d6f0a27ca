"""Small synthetic data shared by tests: smooth-ish random RGB photos and a tiny validated corpus."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from srstyle.io import write_json


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A random image with natural-ish structure (low-pass noise plus edges), uint8 RGB."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)).astype(np.float64)
    base[:, w // 3 : w // 3 + 3] = 20
    base[h // 2 : h // 2 + 2, :] = 230
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def make_corpus(root: Path, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (72, 90)) -> tuple[Path, Path]:
    """Write raw/ and validated/ folders as the fetch and validate stages would; return (raw, validated)."""
    raw, validated = root / "raw", root / "validated"
    entries = []
    for i in range(n_train + n_val):
        split = "train" if i < n_train else "val"
        file = f"{split}/img{i}.png"
        (raw / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(*size, seed=i)).save(raw / file)
        entries.append({"file": file, "split": split, "sha256": str(i), "width": size[1], "height": size[0]})
    write_json(entries, raw / "manifest.json")
    write_json(entries, validated / "manifest.json")
    return raw, validated


# Style-transfer settings of the tiny project (the style stages of dvc.yaml run in every `dvc repro` of it).
# 4-step nets of width 4 are badly conditioned (see tests/test_style_pipeline.py), hence export_atol 2e-3.
TINY_STYLE = {
    "content": {"embedded_grayscale": False},
    "fast": {"styles": ["starry_night"], "channels": 4, "steps": 4, "batch_size": 1, "image_size": 32,
             "style_size": 48, "log_every": 2, "checkpoint_every": 2, "threads": 1},
    "meta": {"base": 4, "hidden": 8, "steps": 3, "batch_size": 1, "image_size": 32, "style_size": 48,
             "log_every": 1, "checkpoint_every": 2, "threads": 1},
    "gatys": {"iterations": [2], "sizes": [40], "line_search": "strong_wolfe"},
    "evaluate": {"size": 40, "max_contents": 1, "gatys_iterations": 2, "timing_size": 32, "timing_repeats": 1},
    "export_atol": 0.002,
}


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def make_tiny_project(root: Path, runs: dict | None = None, extra: tuple[str, ...] = ()) -> Path:
    """A copy of this project (real dvc.yaml, stages, src) with tiny training settings, as a git + DVC repo:
    what `dvc repro` and the Prefect flow run on in tests. ``runs`` replaces params.yaml `runs` (default: espcn_x3 and fsrcnn_x3); the style
    chain gets ``TINY_STYLE`` (seconds instead of the demo's minutes)."""
    import shutil
    import subprocess

    import yaml

    repo = Path(__file__).resolve().parents[1]
    root.mkdir(parents=True, exist_ok=True)
    for item in ("dvc.yaml", "stages", "src", "pyproject.toml", *extra):
        src = repo / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / item)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["embedded_grayscale"] = False
    params["patches"].update({"hr_size": 48, "stride": 48})
    params["train"].update({"steps": 20, "val_every": 10, "log_every": 5, "checkpoint_every": 10, "threads": 1})
    for recipe in params["recipes"].values():
        recipe.update({"steps": 20, "lr_milestones": []})
    params["models"]["espcn"]["channels"] = [16, 8]
    params["models"]["fsrcnn"].update({"d": 16, "s": 8, "m": 1})
    # vgg_distance on a 64 px window (the demo: 192): the same code path, a ninth of the VGG work per image
    params["evaluate"]["vgg_crop"] = params["benchmark"]["vgg_crop"] = 64
    _merge(params["style"], TINY_STYLE)
    # the two small Y models unless told otherwise (params.yaml's x4 RGB runs have minutes-long time budgets)
    params["runs"] = runs if runs is not None else {"espcn_x3": {"model": "espcn", "scale": 3},
                                                    "fsrcnn_x3": {"model": "fsrcnn", "scale": 3}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    import os
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    shutil.copy(repo / ".dvc" / "config", root / ".dvc" / "config")  # the project's DVC settings (offline plots page)
    return root


def tiny_env() -> dict:
    """The environment `dvc` and the stages of a tiny project run with: this interpreter's venv first on PATH,
    and no developer's MLflow server or project root."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SRSTYLE_ROOT")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of a finished tiny project (workspace, git, DVC cache and run cache, MLflow store) for a test that
    changes it: seconds, where retraining it costs minutes, and the original stays as its readers expect.

    MLflow's SQLite store holds absolute artifact locations (experiments, runs, model versions, logged models),
    and each logged model's MLmodel file its own: every one naming ``src`` is pointed at ``dst``, so what the
    copy logs, registers or downloads stays inside the copy (checked: none names ``src`` afterwards). Everything
    else in a project (dvc.lock, .dvc/config's remote, the mlflow_run.json records) is relative."""
    import contextlib
    import shutil
    import sqlite3

    src, dst = Path(src).resolve(), Path(dst).resolve()
    shutil.copytree(src, dst, symlinks=True)
    db = dst / "mlruns.db"
    if not db.is_file():
        return dst
    old, new = str(src), str(dst)
    with contextlib.closing(sqlite3.connect(db)) as con, con:  # closed, and committed on success
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        left = []
        for table in tables:
            columns = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')
                       if any(t in (r[2] or "").upper() for t in ("CHAR", "TEXT", "CLOB"))]
            for col in columns:
                con.execute(f'UPDATE "{table}" SET "{col}" = REPLACE("{col}", ?, ?) WHERE instr("{col}", ?) > 0',
                            (old, new, old))
                left += [f"{table}.{col}"] * con.execute(
                    f'SELECT COUNT(*) FROM "{table}" WHERE instr("{col}", ?) > 0', (old + "/",)).fetchone()[0]
    for mlmodel in (dst / "mlartifacts").rglob("MLmodel"):
        text = mlmodel.read_text()
        if old in text:
            mlmodel.write_text(text.replace(old, new))
        left += [str(mlmodel)] * (old + "/" in mlmodel.read_text())
    assert not left, f"{dst}: still names {src} in {sorted(set(left))}"
    return dst


def trained_espcn(steps: int = 120, channels=(16, 8), seed: int = 0):
    """A small ESPCN x3 fitted briefly to bicubic-downscaled synthetic photos: outputs in the image range
    (a random-weight model's outputs are not, which makes colour-path comparisons meaningless).

    Trained once per session and arguments (several fixtures ask for the same one); each caller gets its own
    copy, so a test that changes its model changes nobody else's."""
    import copy

    return copy.deepcopy(_trained_espcn(steps, tuple(channels), seed))


@functools.lru_cache(maxsize=4)
def _trained_espcn(steps: int, channels: tuple, seed: int):
    import torch

    from srstyle.color import rgb_to_y
    from srstyle.models import build_model
    from srstyle.resize import downscale_rgb

    hr = np.stack([rgb_to_y(photo(48, 48, seed=seed + i)) for i in range(16)]) / 255.0
    lr = np.stack([rgb_to_y(downscale_rgb(photo(48, 48, seed=seed + i), 3)) for i in range(16)]) / 255.0
    x, y = torch.tensor(lr, dtype=torch.float32)[:, None], torch.tensor(hr, dtype=torch.float32)[:, None]
    torch.manual_seed(seed)
    model = build_model("espcn", 3, channels=list(channels))
    return fit_briefly(model, x, y, steps)


def fit_briefly(model, x, y, steps: int, lr: float = 3e-3):
    """Adam on the MSE for ``steps`` full-batch steps: a small test model whose outputs stay in image range."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# A project whose dvc.yaml has small synthetic stages (the real params.yaml, so the flow's parameter checks
# run as in the real project): what the flow's mechanics are tested on in seconds. Each stage appends
# "<stage> <train.steps at start> <train.steps at end> <pid>" to stages.log and prints its lines slowly.
FLOW_STEP = '''import os, pathlib, sys, time
import yaml

name, pause = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
steps = lambda: yaml.safe_load(open("params.yaml"))["train"]["steps"]
start = steps()
print(f"{name}: early line (steps={start})", flush=True)
time.sleep(pause)
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / f"{name}.txt").write_text(f"{start}\\n")
with open("stages.log", "a") as f:
    f.write(f"{name} {start} {steps()} {os.getpid()}\\n")
print(f"{name}: late line", flush=True)
'''

FLOW_DVC_YAML = """stages:
  fetch:
    cmd: python step.py fetch {pause}
    params: [train.steps]
    outs: [out/fetch.txt]
  train:
    cmd: python step.py train {pause}
    deps: [out/fetch.txt]
    params: [train.steps]
    outs: [out/train.txt]
"""


def make_flow_project(root: Path, pause: float = 0.0) -> Path:
    """A git + DVC repo with the synthetic stages above (fetch -> train) and this project's params.yaml."""
    import os
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "params.yaml", root / "params.yaml")
    (root / "step.py").write_text(FLOW_STEP)
    (root / "dvc.yaml").write_text(FLOW_DVC_YAML.format(pause=pause))
    (root / ".gitignore").write_text("stages.log\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


def untrained_meta_net(backbone, base: int = 4, hidden: int = 8, size: int = 48):
    """A randomly initialised meta network with its input normalisation set as training sets it (from the
    statistics of the paintings it knows; here two photos), so its generated weights have a trained net's scale."""
    import skimage.data
    import torch

    from srstyle.data.style_data import to_tensor
    from srstyle.models.style.gatys import resize_to
    from srstyle.models.style.metanet import META_TAPS, MetaNet, style_statistics

    meta = MetaNet(base=base, hidden=hidden).eval()
    with torch.no_grad():
        stats = [style_statistics(backbone(resize_to(to_tensor(img)[None], size)), META_TAPS)
                 for img in (skimage.data.astronaut(), skimage.data.coffee())]
    meta.set_input_scale(torch.cat(stats))
    return meta
