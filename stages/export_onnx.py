"""DVC stage `export_onnx@<run>`: ONNX with dynamic N/H/W, onnx.checker + onnxruntime parity on an odd size,
then (export.int8.enabled) the static int8 QDQ variant calibrated on the patch store, with the PSNR/SSIM of
both precisions on the validation split in int8.json (the PSNR cost of int8 is a tracked metric)."""

import logging
import sys

from srstyle.config import load_params
from srstyle.export.onnx import export_and_check
from srstyle.export.quantize import export_int8
from srstyle.logs import setup_logging
from srstyle.paths import DataPaths, project_root
from srstyle.tracking import resume_run
from srstyle.models.files import load_model_file

if __name__ == "__main__":
    setup_logging()
    run = sys.argv[1] if len(sys.argv) > 1 else "espcn_x3"
    params = load_params()
    root = project_root()
    paths = DataPaths(root)
    model_dir, out = paths.model_dir(run), paths.onnx_dir(run)
    model = load_model_file(model_dir / "model.pt")
    with resume_run(model_dir, params.tracking, root) as mlrun:
        import mlflow
        import onnx

        report = export_and_check(model, out, run, opset=params.export.opset, atol=params.export.atol,
                                  metadata={"mlflow_run_id": mlrun.info.run_id, "run": run})
        mlflow.log_metric("onnx_max_abs_diff", report["max_abs_diff"])
        mlflow.onnx.log_model(onnx.load(str(out / report["file"])), name="onnx_model",
                              pip_requirements=["onnxruntime", "numpy"])
        if params.export.int8.enabled:
            int8 = export_int8(out / report["file"], paths.patches, paths.validated, paths.raw, params.export.int8,
                               engine=params.engine, seed=params.seed, max_pixels=params.validate_.max_pixels)
            mlflow.log_metrics({f"onnx_{k}": float(v) for k, v in int8.items() if isinstance(v, (int, float))})
            mlflow.log_artifact(str(out / int8["file"]), artifact_path="onnx_int8")
            logging.getLogger("export").info("%s int8: %s", run, int8)
    logging.getLogger("export").info("%s: %s", run, report)
