"""DVC stage `export_onnx`: ONNX with dynamic H/W, onnx.checker + onnxruntime parity on an odd size."""

import logging

from srstyle.config import load_params
from srstyle.export.onnx import export_and_check
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root, run_name
from srstyle.tracking import resume_run
from srstyle.train.sr import load_model_file

if __name__ == "__main__":
    setup_logging()
    params = load_params()
    root = project_root()
    paths = DataPaths(root)
    name = run_name(params.train.model, params.train.scale)
    model_dir, out = paths.model_dir(name), paths.onnx_dir(name)
    model = load_model_file(model_dir / "model.pt")
    with resume_run(model_dir, params.tracking, root) as run:
        import mlflow
        import onnx

        report = export_and_check(model, out, name, opset=params.export.opset, atol=params.export.atol,
                                  metadata={"mlflow_run_id": run.info.run_id})
        mlflow.log_metric("onnx_max_abs_diff", report["max_abs_diff"])
        mlflow.onnx.log_model(onnx.load(str(out / report["file"])), name="onnx_model",
                              pip_requirements=["onnxruntime", "numpy"])
    logging.getLogger("export").info("%s", report)
