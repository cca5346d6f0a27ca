"""NIQE and vgg_distance inside the evaluate protocol and the benchmark table."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from srstyle.data.benchmarks import prepare_benchmark
from srstyle.evaluate.benchmark import markdown, metrics_table, score_dataset
from srstyle.evaluate.niqe import niqe
from srstyle.evaluate.perceptual import VGGDistance
from srstyle.evaluate.sr import evaluate_image
from srstyle.inference import _torch_model
from srstyle.models import build_model


@pytest.fixture(scope="module")
def vgg() -> VGGDistance:
    return VGGDistance()


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[:240, 120:360])  # 240x240: two NIQE blocks a side


def test_evaluate_image_scores_model_bicubic_and_hr(vgg, hr):
    model = _torch_model(build_model("espcn", 2, channels=[8, 4]), "t")  # untrained: a blurry upscaler
    plain = evaluate_image(model, hr)
    row = evaluate_image(model, hr, perceptual=True, vgg=vgg, vgg_crop=96)
    assert "niqe" not in plain and plain["psnr"] == row["psnr"]  # off by default (int8 checks, budget sweeps)
    assert row["hr_niqe"] == pytest.approx(niqe(hr, border=2))
    # the photo is more natural than its x2 bicubic reconstruction, which is far from it in VGG features
    assert row["hr_niqe"] < row["bicubic_niqe"]
    assert 0 < row["bicubic_vgg_distance"] < 4 and 0 < row["vgg_distance"] < 4


def test_benchmark_rows_carry_the_perceptual_columns(tmp_path, vgg, hr):
    (tmp_path / "src").mkdir()
    Image.fromarray(hr).save(tmp_path / "src" / "a.png")
    prepare_benchmark("mine", tmp_path / "sets", tmp_path, local_dir=str(tmp_path / "src"))
    plain = score_dataset(None, tmp_path / "sets/mine", 2, "matlab", 10**7)
    bic = score_dataset(None, tmp_path / "sets/mine", 2, "matlab", 10**7, perceptual=True, vgg=vgg, vgg_crop=96)
    assert "niqe" not in plain and bic["psnr"] == plain["psnr"] and bic["niqe"] > 0 and 0 < bic["vgg_distance"] < 4
    row = {"model": "bicubic", "dataset": "mine", "scale": 2, **bic, "published": None}
    assert metrics_table([row])["mine"]["x2"]["bicubic"] == {k: bic[k] for k in ("psnr", "ssim", "niqe", "vgg_distance")}
    assert f"{bic['niqe']:.4f}" in markdown([row])
