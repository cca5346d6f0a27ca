"""DVC stage `export_style_onnx`: each Johnson net, and the meta network as metanet.onnx + transformer.onnx,
every graph checked against PyTorch with onnxruntime."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.style import export_style

if __name__ == "__main__":
    stage_main(export_style)
