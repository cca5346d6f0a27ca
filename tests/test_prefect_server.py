"""A real `prefect server start` on 127.0.0.1 (project-style local PREFECT_HOME): the retrain deployments are
registered the two ways the Makefile does it, and their cron schedule and work pool are read back."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import stop

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prefect_api(prefect_server):
    """The session's Prefect server (tests/conftest.py) and the environment a client process gets for it."""
    api, base = prefect_server
    client_env = {**os.environ, "PREFECT_HOME": str(base / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "PREFECT_API_URL": api,
                  "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return api, client_env, base


def _client(api):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Ctx:
        def __enter__(self):
            self.settings = temporary_settings({PREFECT_API_URL: api})
            self.settings.__enter__()
            self.client = get_client(sync_client=True)
            return self.client.__enter__()

        def __exit__(self, *exc):
            self.client.__exit__(*exc)
            self.settings.__exit__(*exc)

    return _Ctx()


def _wait_deployment(api, name, proc=None, timeout=60):
    """The deployment once registered; "not found" is the only error waited out (others fail at once)."""
    from prefect.exceptions import ObjectNotFound

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with _client(api) as client:
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                pass
        time.sleep(0.5)
    raise TimeoutError(name)


@pytest.fixture
def empty_server(prefect_api):
    """Each test starts from a server without deployments: no test sees another's (any order works)."""
    api = prefect_api[0]
    with _client(api) as client:
        for deployment in client.read_deployments():
            client.delete_deployment(deployment.id)
    return prefect_api


def test_served_deployments_have_the_weekly_cron(empty_server):
    """`make retrain-schedule`: this process registers and serves the deployments (no work pool)."""
    api, env, base = empty_server
    log = open(base / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.deployments", "serve"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        weekly = _wait_deployment(api, "retrain/weekly", proc)
        on_demand = _wait_deployment(api, "retrain/on-demand", proc)
    finally:
        stop(proc)
        log.close()
    assert [s.schedule.cron for s in weekly.schedules] == ["0 3 * * 1"]
    assert weekly.schedules[0].schedule.timezone == "UTC" and weekly.schedules[0].active
    assert on_demand.schedules == []
    assert weekly.work_pool_name is None  # served deployments run in the serving process
    assert weekly.global_concurrency_limit.limit == on_demand.global_concurrency_limit.limit == 1


def test_deployments_registered_in_a_process_work_pool(empty_server):
    """`make retrain-deploy`: the deployments point at a process work pool that a worker polls."""
    api, env, _ = empty_server
    proc = subprocess.run([sys.executable, "-m", "pipelines.deployments", "deploy", "--pool", "srstyle-process"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "retrain/weekly" in proc.stdout
    with _client(api) as client:
        weekly = client.read_deployment_by_name("retrain/weekly")
        on_demand = client.read_deployment_by_name("retrain/on-demand")
        pool = client.read_work_pool("srstyle-process")
        flow = client.read_flow(weekly.flow_id)
    assert flow.name == "retrain"
    assert weekly.work_pool_name == on_demand.work_pool_name == "srstyle-process" and pool.type == "process"
    assert [s.schedule.cron for s in weekly.schedules] == ["0 3 * * 1"]
    assert on_demand.schedules == []
    assert weekly.entrypoint == "pipelines/retrain.py:retrain"
    assert weekly.global_concurrency_limit.limit == on_demand.global_concurrency_limit.limit == 1
    assert str(REPO) in str(weekly.pull_steps)  # workers load the flow from the project folder
    assert set(weekly.parameter_openapi_schema["properties"]) >= {"scale", "models", "overrides", "project_dir",
                                                                  "workspace_wait_s"}


def test_cli_refuses_to_start_a_throwaway_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pipelines.deployments", "serve"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "make prefect-ui" in proc.stderr
