"""DVC stage `evaluate@<run>`: PSNR/SSIM on Y (BT.601, border = scale), NIQE and vgg_distance of the model and
bicubic, with pictures, logged into the run's MLflow training run."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.sr import evaluate_run

if __name__ == "__main__":
    stage_main(evaluate_run, name_from="runs")
