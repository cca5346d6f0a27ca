"""DVC stage `compare`: every trained run side by side on the same crop, and one metrics table."""

from srstyle.pipeline_steps import stage_main
from srstyle.pipeline_steps.sr import compare_runs

if __name__ == "__main__":
    stage_main(compare_runs)
