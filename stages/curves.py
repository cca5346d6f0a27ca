"""DVC stage `curves`: every run's training curves as one table per metric + data/plots/curves.png."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.curves import collect_curves

if __name__ == "__main__":
    stage_main(collect_curves)
