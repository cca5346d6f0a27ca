"""DVC stage `evaluate_style`: every style method on held-out content, against Gatys; grids + metrics."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.style import evaluate_style_step

if __name__ == "__main__":
    stage_main(evaluate_style_step)
