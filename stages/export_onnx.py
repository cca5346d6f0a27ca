"""DVC stage `export_onnx@<run>`: ONNX (dynamic N/H/W, onnxruntime parity) logged as the run's `onnx_model`;
the int8 QDQ variant (export.int8, int8.json); every precision variant (onnxruntime fp32/int8, OpenVINO
fp32/bf16/int8) scored on validation + unseen photos, drop and `usable` each, in <run>.precision.json."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.sr import export_run

if __name__ == "__main__":
    stage_main(export_run, name_from="runs")
