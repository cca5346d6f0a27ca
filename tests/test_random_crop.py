"""Random-crop mode (patches.crop: random): the sub-image store, its aligned crops, exact resume, DDP shards."""

import json

import numpy as np
import pytest
import torch

from srstyle.color import rgb_to_y, to_uint8
from srstyle.config import ConfigError, PatchesConfig, parse_params
from srstyle.data.datasets import BatchSampler, PatchStore, RandomCropStore, open_store
from srstyle.data.patches import make_patches
from srstyle.data.subimages import subimage_starts
from srstyle.io import load_rgb
from srstyle.resize import downscale_rgb, modcrop
from tests.helpers import make_corpus

# 72x90 corpus images at x3: 36 px sub-images every 12 px serve crops up to 24 px.
RANDOM = {"scales": [3], "modes": ["y", "rgb"], "hr_size": 24, "stride": 12, "crop": "random",
          "subimage_size": 36, "subimage_step": 12}


@pytest.fixture()
def corpus(tmp_path):
    return make_corpus(tmp_path)


@pytest.fixture()
def stores(corpus, tmp_path):
    raw, validated = corpus
    make_patches(validated, raw, tmp_path / "patches", PatchesConfig(**RANDOM), seed=0, max_pixels=10**7, progress=False,
                 extra_stores=[("y", 3, 12)])  # a run with its own patch size
    return raw, tmp_path / "patches"


def test_subimage_starts_cover_every_border():
    assert subimage_starts(90, 36, 12) == [0, 12, 24, 36, 48, 54]  # the last one flush with the border
    assert subimage_starts(72, 36, 12) == [0, 12, 24, 36]
    assert subimage_starts(30, 36, 12) == [0]                      # a short side: one sub-image, the whole side


def test_layout_atomic_write_and_grid_validation(stores, tmp_path):
    """One sub-image store per mode/scale for training (bytes = the image layout, nothing else beyond the
    .npy headers), a grid store for validation, no temporary folder left behind."""
    _, patches = stores
    index = json.loads((patches / "train" / "y_x3" / "index.json").read_text())
    assert index["crop"] == "random" and index["count"] == 3 * 4 * 6  # 4 x 6 sub-images of 36x36 per image
    assert index["bytes"] == 3 * 4 * 6 * (36 * 36 + 12 * 12)
    real = sum((patches / "train" / "y_x3" / f).stat().st_size for f in ("hr.npy", "lr.npy"))
    assert 0 <= real - index["bytes"] <= 2 * 128
    assert isinstance(open_store(patches / "train" / "rgb_x3"), RandomCropStore)
    assert type(open_store(patches / "val" / "y_x3")) is PatchStore  # a fixed validation set
    assert not [p for p in (patches / "train").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("mode", ["y", "rgb"])
def test_crops_are_aligned_with_the_bicubic_lr(stores, mode):
    """Every crop is the HR image at a scale-aligned position and the LR image (made as the grid store
    makes it) at that position / scale, whichever sub-image it is read from."""
    raw, patches = stores
    store = RandomCropStore(patches / "train" / f"{mode}_x3")
    assert len(store) == 3 * ((72 - 24) // 3 + 1) * ((90 - 24) // 3 + 1)
    idx = np.random.default_rng(0).integers(0, len(store), 40)
    lr, hr = store._gather(idx, None)
    for j, (k, y, x) in enumerate(store.position(idx)):
        assert y % 3 == 0 and x % 3 == 0
        img = modcrop(load_rgb(raw / "train" / f"img{k}.png"), 3)
        small = downscale_rgb(img, 3)
        if mode == "y":
            img, small = to_uint8(rgb_to_y(img)), to_uint8(rgb_to_y(small))
        np.testing.assert_array_equal(hr[j], img[y : y + 24, x : x + 24])
        np.testing.assert_array_equal(lr[j], small[y // 3 : y // 3 + 8, x // 3 : x // 3 + 8])


def test_crops_equal_the_grid_stores_patches(corpus, stores, tmp_path):
    """Same HR and LR bytes as the grid store's patch at the same (image, y, x)."""
    raw, validated = corpus
    grid_cfg = PatchesConfig(**{**RANDOM, "crop": "grid", "min_std": 0.0})
    make_patches(validated, raw, tmp_path / "grid", grid_cfg, seed=0, max_pixels=10**7, progress=False)
    grid = PatchStore(tmp_path / "grid" / "train" / "rgb_x3")
    origin = np.load(tmp_path / "grid" / "train" / "rgb_x3" / "origin.npy")
    store = RandomCropStore(stores[1] / "train" / "rgb_x3")
    lookup = {tuple(p): i for i, p in enumerate(store.position(np.arange(len(store))))}
    picks = np.array([lookup[tuple(o)] for o in origin])
    lr, hr = store._gather(picks, None)
    np.testing.assert_array_equal(hr, grid.hr[:])
    np.testing.assert_array_equal(lr, grid.lr[:])


def test_random_crops_cover_the_positions(stores):
    store = RandomCropStore(stores[1] / "train" / "y_x3", hr_size=12)  # a smaller patch size from the same store
    sampler = BatchSampler(len(store), 64, seed=1)
    pos = np.concatenate([store.position(sampler.next_indices()) for _ in range(30)])
    assert set(pos[:, 0]) == {0, 1, 2}
    assert len({tuple(p) for p in pos}) > 1000                       # not a few fixed crops
    assert pos[:, 1].max() == 72 - 12 and pos[:, 2].max() == 90 - 12  # the borders are reached
    assert pos[:, 1].min() == 0 and pos[:, 2].min() == 0
    lr, hr = store.batch(np.arange(4))
    assert lr.shape == (4, 1, 4, 4) and hr.shape == (4, 1, 12, 12)


def test_a_ddp_shard_is_its_part_of_the_global_batch(stores):
    """Each rank reads its slice of the global batch, with the dihedral draws a single process gives it."""
    store = RandomCropStore(stores[1] / "train" / "rgb_x3")
    idx = BatchSampler(len(store), 6, seed=3).next_indices()
    whole = store.batch_to(idx, np.random.default_rng(9), torch.device("cpu"))
    parts = [store.batch_to(idx, np.random.default_rng(9), torch.device("cpu"), shard=slice(r * 3, r * 3 + 3))
             for r in range(2)]
    for t in range(2):
        assert torch.equal(torch.cat([p[t] for p in parts]), whole[t])


def test_a_store_the_disk_cannot_hold_is_refused_before_writing(corpus, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    raw, validated = corpus
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**6, 10**6))
    with pytest.raises(OSError, match=r"train/rgb_x3 sub-image store .* needs .* GB") as err:
        make_patches(validated, raw, tmp_path / "full", PatchesConfig(**RANDOM), seed=0, max_pixels=10**7,
                     progress=False)
    assert "patches.subimage_step" in str(err.value)
    assert not any((tmp_path / "full" / "train").iterdir())


def test_config_names_the_field_and_the_limit():
    with pytest.raises(ConfigError, match=r"patches\.crop"):
        parse_params({"patches": {"crop": "bogus"}})
    with pytest.raises(ConfigError, match=r"runs\.big\.hr_size=30: .*subimage_step <= subimage_size - 30"):
        parse_params({"patches": RANDOM, "runs": {"big": {"model": "espcn", "scale": 3, "hr_size": 30}}})
    with pytest.raises(ConfigError, match=r"larger than the sub-images .*patches\.subimage_size"):
        parse_params({"patches": RANDOM, "runs": {"big": {"model": "espcn", "scale": 3, "hr_size": 39}}})
    with pytest.raises(ConfigError, match="multiples of every scale"):
        parse_params({"patches": {**RANDOM, "subimage_size": 40}})
    assert parse_params({}).patches.crop == "grid"  # the demo is unchanged


def _params(**train):
    return parse_params({
        "seed": 7,
        "patches": RANDOM,
        "runs": {"espcn_x3": {"model": "espcn", "scale": 3}, "espcn_small": {"model": "espcn", "scale": 3, "hr_size": 12}},
        "train": {"steps": 8, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 3, "val_every": 4, "log_every": 2,
                  "threads": 1, **train},
        "models": {"espcn": {"channels": [8, 4]}},
    })


def test_resume_is_exact_in_random_mode(stores, tmp_path):
    """N steps straight == k steps, stop, resume to N: the crops come from the checkpointed sampler state."""
    from srstyle.train.sr import load_model_file, train_sr

    patches = stores[1]
    params = _params()
    straight = train_sr(params, "espcn_x3", patches, tmp_path / "a", progress=False)
    interrupted = train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False, stop_after=5)
    assert interrupted.steps == 5 and not (tmp_path / "b" / "model.pt").exists()
    train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False)
    a = load_model_file(tmp_path / "a" / "model.pt").state_dict()
    b = load_model_file(tmp_path / "b" / "model.pt").state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()
    assert straight.steps == 8


def test_a_run_with_its_own_patch_size_crops_the_shared_store(stores):
    """One sub-image store per mode/scale serves every run; validation keeps a grid store per patch size."""
    from srstyle.train.sr_common import open_stores

    patches = stores[1]
    assert not (patches / "train" / "y_x3_hr12").exists() and (patches / "val" / "y_x3_hr12").is_dir()
    train, val = open_stores(patches, *_params().run("espcn_small").store("y"))
    assert isinstance(train, RandomCropStore) and train.index["hr_size"] == 12 and val.index["hr_size"] == 12
    default, _ = open_stores(patches, *_params().run("espcn_x3").store("y"))
    assert default.index["hr_size"] == 24 and default.index != train.index  # distinct run fingerprints


def test_the_div2k_profile_applies_over_params_yaml():
    """profiles/div2k.yaml after paper.yaml (later -S flags win) gives valid parameters in random-crop mode."""
    from pathlib import Path

    import yaml

    from srstyle.cli import profile_args

    root = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "params.yaml").read_text())
    flags = profile_args(root / "profiles" / "paper.yaml") + profile_args(root / "profiles" / "div2k.yaml")
    for flag in flags[1::2]:
        key, value = flag.split("=", 1)
        *parents, leaf = key.split(".")
        node = raw
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    params = parse_params(raw)
    assert params.data.preset == "div2k" and params.patches.crop == "random"
    assert params.run("edsr_x4").hr_size == 192 and params.patches.subimage_step + 192 <= params.patches.subimage_size


def test_int8_calibration_reads_either_store(stores, tmp_path):
    """The export's calibration patches: seeded crops of a random-crop store; a grid store's values unchanged."""
    from srstyle.export.quantize import calibration_patches

    patches = calibration_patches(stores[1] / "train" / "y_x3", 10, seed=1)
    assert patches.shape == (10, 1, 8, 8) and patches.dtype == np.float32 and 0 < patches.mean() < 1
    grid_dir = stores[1] / "val" / "rgb_x3"
    lr = np.load(grid_dir / "lr.npy")
    idx = np.sort(np.random.default_rng(0).choice(len(lr), 5, replace=False))
    np.testing.assert_array_equal(calibration_patches(grid_dir, 5), (lr[idx].astype(np.float32) / 255.0).transpose(0, 3, 1, 2))
