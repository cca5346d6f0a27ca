import json

import numpy as np
import pytest

from srstyle.color import rgb_to_y, to_uint8
from srstyle.config import PatchesConfig
from srstyle.data.datasets import BatchSampler, PatchStore
from srstyle.data.patches import make_patches
from srstyle.io import load_rgb
from srstyle.resize import downscale_rgb, modcrop
from tests.helpers import make_corpus


@pytest.fixture()
def corpus(tmp_path):
    return make_corpus(tmp_path)


def test_stores_are_aligned_y_patches(corpus, tmp_path):
    raw, validated = corpus
    cfg = PatchesConfig(scales=[2, 3], modes=["y", "rgb"], hr_size=24, stride=12)
    counts = make_patches(validated, raw, tmp_path / "patches", cfg, seed=0, max_pixels=10**7, progress=False)
    # 72x90 image (a multiple of 2 and 3): rows 0..48 step 12 (5), columns 0..66 step 12 (6).
    assert counts["train/y_x2"] == 3 * 5 * 6 and counts["val/rgb_x3"] == 2 * 5 * 6

    store = PatchStore(tmp_path / "patches" / "train" / "y_x3")
    assert store.hr.shape == (90, 24, 24) and store.lr.shape == (90, 8, 8) and store.hr.dtype == np.uint8
    origin = np.load(tmp_path / "patches" / "train" / "y_x3" / "origin.npy")
    k, y, x = origin[8]
    img = modcrop(load_rgb(raw / "train" / f"img{k}.png"), 3)
    np.testing.assert_array_equal(store.hr[8], to_uint8(rgb_to_y(img))[y : y + 24, x : x + 24])
    lr = to_uint8(rgb_to_y(downscale_rgb(img, 3)))
    np.testing.assert_array_equal(store.lr[8], lr[y // 3 : y // 3 + 8, x // 3 : x // 3 + 8])

    rgb = PatchStore(tmp_path / "patches" / "val" / "rgb_x2")
    assert rgb.hr.shape[1:] == (24, 24, 3) and rgb.lr.shape[1:] == (12, 12, 3)
    lr_t, hr_t = rgb.batch(np.array([0, 1]))
    assert lr_t.shape == (2, 3, 12, 12) and hr_t.shape == (2, 3, 24, 24) and float(hr_t.max()) <= 1.0


def test_deterministic_and_no_temp_left(corpus, tmp_path):
    raw, validated = corpus
    cfg = PatchesConfig(scales=[3], hr_size=24, stride=12, max_per_image=10, min_std=1.0)
    make_patches(validated, raw, tmp_path / "a", cfg, seed=5, max_pixels=10**7, progress=False)
    make_patches(validated, raw, tmp_path / "b", cfg, seed=5, max_pixels=10**7, progress=False)
    for name in ("hr.npy", "lr.npy", "origin.npy"):
        assert (tmp_path / "a/train/y_x3" / name).read_bytes() == (tmp_path / "b/train/y_x3" / name).read_bytes()
    index = json.loads((tmp_path / "a/train/y_x3/index.json").read_text())
    assert index["count"] == 30 and all(i["patches"] == 10 for i in index["images"])
    assert not [p for p in (tmp_path / "a" / "train").iterdir() if p.name.startswith(".")]


def test_flat_patches_dropped_from_train_only(tmp_path):
    raw, validated = make_corpus(tmp_path, n_train=1, n_val=1)
    from PIL import Image

    flat = np.full((72, 90, 3), 40, np.uint8)
    Image.fromarray(flat).save(raw / "train" / "img0.png")
    Image.fromarray(flat).save(raw / "val" / "img1.png")
    cfg = PatchesConfig(scales=[3], hr_size=24, stride=12, min_std=2.0)
    with pytest.raises(ValueError, match="no 24x24 patch"):
        make_patches(validated, raw, tmp_path / "p", cfg, seed=0, max_pixels=10**7, progress=False)


def test_config_rejects_misaligned_sizes():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="multiple of every scale"):
        PatchesConfig(scales=[3], hr_size=50)
    with pytest.raises(ValidationError, match="stride"):
        PatchesConfig(scales=[4], hr_size=48, stride=18)


def test_sampler_state_round_trip():
    a = BatchSampler(100, 8, seed=3)
    a.next_indices()
    state = a.state()
    expected = [a.next_indices() for _ in range(3)]
    b = BatchSampler(100, 8, seed=99)
    b.load_state(state)
    for e in expected:
        np.testing.assert_array_equal(b.next_indices(), e)


def test_a_store_the_disk_cannot_hold_is_refused_before_writing(corpus, tmp_path, monkeypatch):
    """The exact size is known after the sizing pass: a store larger than the free disk fails before its first
    byte, naming the store, the sizes and what to change; the byte count is the arrays' real size."""
    import shutil
    from collections import namedtuple

    from srstyle.data import patches

    raw, validated = corpus
    cfg = PatchesConfig(scales=[3], modes=["rgb"], hr_size=24, stride=12)
    make_patches(validated, raw, tmp_path / "ok", cfg, seed=0, max_pixels=10**7, progress=False)
    folder = tmp_path / "ok" / "train" / "rgb_x3"
    real = sum((folder / f).stat().st_size for f in ("hr.npy", "lr.npy", "origin.npy"))
    count = PatchStore(folder).index["count"]
    assert 0 <= real - patches.store_bytes(count, 24, 8, "rgb") <= 3 * 128  # only the three .npy headers beyond it

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**6, 10**6))  # 1 MB free
    with pytest.raises(OSError, match=r"train/rgb_x3 patch store .* needs .* GB .* free") as err:
        make_patches(validated, raw, tmp_path / "full", cfg, seed=0, max_pixels=10**7, progress=False)
    assert "patches.stride" in str(err.value)
    assert not (tmp_path / "full" / "train").exists() or not any((tmp_path / "full" / "train").iterdir())
