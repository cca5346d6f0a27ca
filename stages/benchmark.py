"""DVC stage `benchmark`: every run x benchmark set, PSNR/SSIM on Y, NIQE and vgg_distance, bicubic first,
published numbers beside."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.benchmark import run_benchmarks

if __name__ == "__main__":
    stage_main(run_benchmarks)
