"""What `make serve` serves: the champions of the project's MLflow registry (params.yaml `tracking:`, no
MLFLOW_TRACKING_URI), SR and style, with a corrupt champion reported and skipped, not fatal."""

import shutil

import httpx
import mlflow
import numpy as np
import pytest

from srstyle.config import TrackingConfig
from srstyle.model_registry import promote, register_onnx
from srstyle.predict import SRPredictor
from srstyle.tracking import setup
from tests.helpers import photo
from tests.service_helpers import STYLE, decode, encode, serve, wait_ready

pytestmark = pytest.mark.timeout(900)


def _register(name: str, onnx_file, score: float, extra=(), higher=True):
    with mlflow.start_run() as run:
        mlflow.log_param("model", name)
    mv = register_onnx(name, run.info.run_id, onnx_file, {"score": score}, {}, extra_files=list(extra))
    return promote(name, mv.version, "score", 0.0, higher_is_better=higher)


@pytest.fixture(scope="module")
def project(model_dir, tmp_path_factory):
    """A project folder whose MLflow store (mlruns.db, mlartifacts/) holds champions of every kind."""
    root = tmp_path_factory.mktemp("proj")
    setup(TrackingConfig(), root)  # the project's own store, as the pipeline makes it
    try:
        _register("sr-x3", model_dir / "sr-x3.onnx", 30.0)
        _register(f"style-{STYLE}", model_dir / f"style-{STYLE}.onnx", 0.5, higher=False)
        _register("style-meta", model_dir / "style-meta.onnx", 0.7, extra=[model_dir / "style-meta.transformer.onnx"],
                  higher=False)
        _register("sr-x4", model_dir / "edsr_x3.onnx", 25.0)
        # corrupt sr-x4's champion file inside the artifact store (a damaged disk, a bad copy)
        files = sorted((root / "mlartifacts").rglob("model.onnx"), key=lambda p: p.stat().st_mtime)
        broken = files[-1]
        broken.write_bytes(b"\x08\x07not a model" * 100)
    finally:
        mlflow.set_tracking_uri(None)
    return root


def test_make_serve_catalog_is_the_registry_champions(project, model_dir, tmp_path):
    with serve(tmp_path, None, extra={"SRSTYLE_ROOT": str(project)}) as s:
        wait_ready(s.url)
        info = httpx.post(f"{s.url}/models", json={}, timeout=10).json()
        assert sorted(info["models"]) == ["meta", "sr-x3", STYLE]
        assert info["models"]["sr-x3"]["source"] == "models:/sr-x3@champion"
        assert info["models"]["sr-x3"]["version"] == "1" and info["models"]["sr-x3"]["metrics"] == {"score": 30.0}
        assert any(e.startswith("sr-x4@champion") for e in info["errors"]), info["errors"]
        assert not (project / "mlruns.db").with_name("mlflow.db").exists()
        assert not (tmp_path / "mlflow.db").exists()  # no stray default store in the working directory

        rgb = photo(40, 50, seed=21)
        r = httpx.post(f"{s.url}/upscale", files={"image": ("a.png", encode(rgb))}, data={"scale": "3"}, timeout=60)
        assert r.status_code == 200
        expected = SRPredictor.from_onnx(model_dir / "sr-x3.onnx").upscale(rgb)
        assert np.abs(decode(r.content).astype(int) - expected.astype(int)).max() <= 1
        for route, data, files in (("stylize", {"style": STYLE}, {}),
                                   ("stylize_arbitrary", {}, {"painting": ("p.png", encode(photo(48, 48, seed=2)))})):
            r = httpx.post(f"{s.url}/{route}", files={"image": ("a.png", encode(rgb)), **files}, data=data, timeout=60)
            assert r.status_code == 200 and decode(r.content).shape == (40, 50, 3), r.text
        r = httpx.post(f"{s.url}/upscale", files={"image": ("a.png", encode(rgb))}, data={"scale": "4"}, timeout=60)
        assert r.status_code == 404 and "available scales: [3]" in r.text
    # no temporary download left behind by the catalog
    assert not list((tmp_path / "tmp").glob("srstyle-serve-*"))


def test_export_champions_writes_the_bento_folder(project, tmp_path):
    from srstyle.model_registry import RegistryError, export_champions
    from srstyle.serving.catalog import load_catalog

    with pytest.raises(RegistryError, match="sr-x4@champion"):  # never package a corrupt champion
        export_champions(tmp_path / "serve_models", TrackingConfig(), project)
    mlflow.MlflowClient().delete_registered_model_alias("sr-x4", "champion")
    try:
        written = export_champions(tmp_path / "serve_models", TrackingConfig(), project)
    finally:
        mlflow.set_tracking_uri(None)
    names = sorted(p.rsplit("/", 1)[1] for p in written)
    assert names == ["sr-x3.onnx", "style-meta.onnx", "style-meta.transformer.onnx", f"style-{STYLE}.onnx"], names
    import os

    os.environ["SRSTYLE_SERVE_DIR"] = str(tmp_path / "serve_models")
    try:
        catalog = load_catalog()
    finally:
        del os.environ["SRSTYLE_SERVE_DIR"]
    assert sorted(catalog.models) == ["meta", "sr-x3", STYLE] and catalog.models["sr-x3"].version == "1"
    shutil.rmtree(tmp_path / "serve_models")
