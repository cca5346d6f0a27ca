"""Deployments of the `retrain` flow: weekly on a cron schedule, and on demand (no schedule).

Two ways to run them, both against the Prefect server in ``PREFECT_API_URL`` (`make prefect-ui` starts one on
127.0.0.1 with a project-local ``PREFECT_HOME``):

    python -m pipelines.deployments serve            # `make retrain-schedule`: this process runs the flows
    python -m pipelines.deployments deploy --pool P  # `make retrain-deploy`: register in work pool P, then
    prefect worker start --pool P                    # `make retrain-worker`: a worker runs them

``deploy`` creates the pool as a *process* pool when it does not exist. For GPU nodes, create a Kubernetes
pool first (pipelines/README.md) and pass its name: the deployment is the same, only the pool differs.

Each deployment has a concurrency limit of 1 (a second run of it waits in the queue): both work on one
project folder; the flow's own workspace lock (pipelines/workspace.py) also serialises the weekly run
against an on-demand one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect.schedules import Cron  # noqa: E402

from pipelines.retrain import PROJECT, retrain  # noqa: E402

WEEKLY_CRON = "0 3 * * 1"   # Mondays 03:00 UTC
TIMEZONE = "UTC"
WEEKLY, ON_DEMAND = "weekly", "on-demand"
DEFAULT_POOL = "srstyle-process"
CONCURRENCY = 1  # runs of one deployment at a time (they share the project's workspace)
ENTRYPOINT = "pipelines/retrain.py:retrain"
DESCRIPTIONS = {
    WEEKLY: "Scheduled retraining: every stage through DVC (only what changed reruns), promotion, packaging.",
    ON_DEMAND: "Retrain now, e.g. with other models/scale/overrides given as run parameters.",
}


def schedules(cron: str = WEEKLY_CRON) -> dict[str, list]:
    return {WEEKLY: [Cron(cron, timezone=TIMEZONE)], ON_DEMAND: []}


def serve(cron: str = WEEKLY_CRON) -> None:
    """Register both deployments and run their flow runs in this process until interrupted."""
    from prefect import serve as prefect_serve

    deployments = [retrain.to_deployment(name=name, schedules=sched, description=DESCRIPTIONS[name],
                                         tags=["srstyle", name], concurrency_limit=CONCURRENCY)
                   for name, sched in schedules(cron).items()]
    prefect_serve(*deployments)


def ensure_pool(name: str, pool_type: str = "process") -> str:
    """The work pool ``name``; created with the type's default base job template if missing."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_work_pool(name).type
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return pool_type


def deploy(pool: str = DEFAULT_POOL, cron: str = WEEKLY_CRON, source: Path = PROJECT,
           job_variables: dict | None = None) -> dict[str, str]:
    """Register both deployments in ``pool``; workers load the flow from ``source`` (the project folder)."""
    ensure_pool(pool)
    flow = retrain.from_source(source=str(source), entrypoint=ENTRYPOINT)
    ids = {}
    for name, sched in schedules(cron).items():
        ids[name] = str(flow.deploy(name=name, work_pool_name=pool, schedules=sched, build=False, push=False,
                                    description=DESCRIPTIONS[name], tags=["srstyle", name],
                                    concurrency_limit=CONCURRENCY,
                                    job_variables=job_variables or {}, print_next_steps=False))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.deployments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the weekly and on-demand deployments from this process")
    s.add_argument("--cron", default=WEEKLY_CRON)
    d = sub.add_parser("deploy", help="register the deployments in a work pool (created as a process pool if missing)")
    d.add_argument("--pool", default=DEFAULT_POOL)
    d.add_argument("--cron", default=WEEKLY_CRON)
    args = parser.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        print("PREFECT_API_URL is not set: start the server with `make prefect-ui` and export "
              "PREFECT_API_URL=http://127.0.0.1:4200/api (the Makefile targets do)", file=sys.stderr)
        return 2
    if args.command == "serve":
        serve(args.cron)
    else:
        for name, dep_id in deploy(args.pool, args.cron).items():
            print(f"retrain/{name}: {dep_id} (pool {args.pool})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
