import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from srstyle.export.onnx import ExportParityError, check_parity, export_and_check
from srstyle.models import build_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("espcn", 3, channels=[16, 8]).eval()
    out = tmp_path_factory.mktemp("onnx")
    report = export_and_check(model, out, "espcn_x3", opset=18, atol=1e-4, metadata={"mlflow_run_id": "abc"})
    return model, out / "espcn_x3.onnx", report


def test_metadata_and_checker(exported):
    _, path, report = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["scale"] == "3" and meta["color"] == "y" and meta["mlflow_run_id"] == "abc"
    assert report["max_abs_diff"] <= 1e-4 and report["input_shape"][2:] == [37, 53]


@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (3, 1, 8, 120), (1, 1, 201, 15)])
def test_dynamic_height_width_batch(exported, shape):
    model, path, _ = exported
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"lr": x})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert got.shape == (shape[0], 1, shape[2] * 3, shape[3] * 3)
    assert np.max(np.abs(got - expected)) <= 1e-4


def test_parity_failure_is_reported(exported):
    model, path, _ = exported
    other = build_model("espcn", 3, channels=[16, 8])
    with pytest.raises(ExportParityError, match="differs from PyTorch"):
        check_parity(other, path)
