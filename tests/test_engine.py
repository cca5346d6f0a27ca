"""The onnxruntime engine every consumer shares: settings applied, IO binding, variants, errors."""

import threading

import numpy as np
import pytest
import torch

from srstyle.config import EngineConfig, parse_params
from srstyle.engine import EngineError, OrtEngine, session_options, variant_path
from srstyle.export.onnx import export_sr_onnx
from srstyle.inference import ModelLoadError, load_sr_model, upscale_rgb
from srstyle.models import build_model
from tests.helpers import photo


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("espcn", 3, channels=[16, 8]).eval()
    return model, export_sr_onnx(model, tmp_path_factory.mktemp("engine") / "espcn_x3.onnx")


def _torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("cfg", [
    EngineConfig(),
    EngineConfig(io_binding=False),
    EngineConfig(intra_op_threads=1, graph_optimization="basic", allow_spinning=False),
    EngineConfig(graph_optimization="disable"),
])
def test_every_setting_gives_pytorch_output(exported, cfg):
    model, path = exported
    engine = OrtEngine(path, cfg)
    x = np.random.default_rng(1).random((2, 1, 29, 41), dtype=np.float32)
    got = engine.run(x)
    assert got.shape == (2, 1, 87, 123)
    assert np.max(np.abs(got - _torch(model, x))) <= 1e-4
    assert engine.describe()["optimization"] == cfg.graph_optimization


def test_session_options_follow_params():
    import onnxruntime as ort

    cfg = parse_params({"engine": {"intra_op_threads": 2, "graph_optimization": "extended", "allow_spinning": False}}).engine
    opts = session_options(cfg)
    assert opts.intra_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_io_binding_writes_into_the_callers_buffer(exported):
    model, path = exported
    engine = OrtEngine(path)
    x = np.random.default_rng(2).random((1, 1, 20, 30), dtype=np.float32)
    out = np.full((1, 1, 60, 90), -7.0, dtype=np.float32)
    result = engine.run(x, out=out)
    assert result is out and np.max(np.abs(out - _torch(model, x))) <= 1e-4
    with pytest.raises(EngineError, match="output buffer"):
        engine.run(x, out=np.empty((1, 1, 60, 91), np.float32))
    with pytest.raises(EngineError, match=r"expects \[N,1,H,W\]"):
        engine.run(np.zeros((1, 3, 8, 8), np.float32))


def test_threads_share_one_engine(exported):
    model, path = exported
    engine = OrtEngine(path)
    inputs = [np.random.default_rng(i).random((1, 1, 16 + i, 24), dtype=np.float32) for i in range(6)]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(5):
            results[i] = engine.run(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, r in zip(inputs, results):
        assert np.max(np.abs(r - _torch(model, x))) <= 1e-4


def test_load_sr_model_goes_through_the_engine(exported):
    _, path = exported
    sr = load_sr_model(path, engine=EngineConfig(backend="onnxruntime", intra_op_threads=1))
    assert isinstance(sr.engine, OrtEngine) and sr.engine.cfg.intra_op_threads == 1
    # auto picks a backend by measurement; whichever it is, it is the engine's and has the settings
    auto = load_sr_model(path, engine=EngineConfig(intra_op_threads=1)).engine
    assert auto.backend in ("onnxruntime", "openvino") and auto.precision == "fp32" and auto.cfg.intra_op_threads == 1
    assert upscale_rgb(sr, photo(20, 30, seed=0)).shape == (60, 90, 3)
    assert load_sr_model(path, threads=2).engine.cfg.intra_op_threads == 2


def test_variant_paths_and_errors(exported, tmp_path):
    _, path = exported
    assert variant_path(path, "int8").name == "espcn_x3.int8.onnx"
    assert variant_path(path.with_name("espcn_x3.int8.onnx"), "fp32") == path
    with pytest.raises(EngineError, match="unknown precision"):
        variant_path(path, "fp16")
    with pytest.raises(ModelLoadError, match="no int8 variant"):
        load_sr_model(path, precision="int8")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        load_sr_model(bad)


def test_service_catalog_serves_both_precisions_on_the_engine(exported, tmp_path, monkeypatch):
    from srstyle.config import Int8Config
    from srstyle.export.quantize import quantize_sr_onnx
    from srstyle.serving.catalog import load_catalog

    _, path = exported
    folder = tmp_path / "serve"
    folder.mkdir()
    fp32 = folder / "espcn_x3.onnx"
    fp32.write_bytes(path.read_bytes())
    patches = np.random.default_rng(0).uniform(0.06, 0.92, (64, 1, 16, 16)).astype(np.float32)
    quantize_sr_onnx(fp32, patches, Int8Config(calibration_batch=16))
    monkeypatch.setenv("SRSTYLE_SERVE_DIR", str(folder))
    # x.int8.onnx is the int8 variant of x.onnx (one served name); engine.precision picks which file runs.
    catalog = load_catalog(engine=EngineConfig(intra_op_threads=1, allow_spinning=False))
    assert sorted(catalog.models) == ["espcn_x3"] and not catalog.errors
    served = catalog.default_sr(3)
    assert served.name == "espcn_x3" and served.precision == "fp32" and served.source.endswith("espcn_x3.onnx")
    assert served.predictor.engine.cfg.intra_op_threads == 1
    int8 = load_catalog(engine=EngineConfig(precision="int8")).default_sr(3)
    assert int8.name == "espcn_x3" and int8.precision == "int8"
    assert int8.predictor.engine.precision == "int8" and int8.predictor.source.endswith("espcn_x3.int8.onnx")
