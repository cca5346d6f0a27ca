"""Test tiers and isolation.

Tiers: ``integration`` (real servers, `dvc repro`, flows, torchrun: the files in INTEGRATION_FILES, and every
test marked ``slow``) and the unit tier (everything else). `make test-fast` runs the unit tier,
`make test` both.

Isolation: a developer's MLFLOW_TRACKING_URI (a team server), SRSTYLE_ROOT, PREFECT_API_URL, BENTOML_HOME...
never reach a test; PREFECT_HOME and BENTOML_HOME point into a session temp folder; every test gets back the
environment and MLflow's global tracking URI it started with (PATH and PYTHONPATH are left as they are).
"""

import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

# Variables that point a process at someone's servers, stores or project: removed for the whole session.
LEAKY = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
         "MLFLOW_RUN_ID", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
         "SRSTYLE_ROOT", "SRSTYLE_PROJECT", "SRSTYLE_LOG_LEVEL", "PREFECT_API_URL", "PREFECT_API_KEY",
         "PREFECT_PROFILES_PATH", "BENTOML_HOME", "BENTOML_CONFIG", "DVC_GLOBAL_CONFIG_DIR", "DVC_SITE_CACHE_DIR")
for _name in LEAKY:
    os.environ.pop(_name, None)
# Prefect and BentoML state of the session in a temp folder, never ~/.prefect or ~/bentoml: set before any test
# module imports prefect (its settings are read when it is imported).
_HOMES = tempfile.mkdtemp(prefix="srstyle-test-homes-")
os.environ["PREFECT_HOME"] = os.path.join(_HOMES, "prefect")
os.environ["BENTOML_HOME"] = os.path.join(_HOMES, "bentoml")
# A task blocked by a tag concurrency limit retries after this many seconds (Prefect's default is 30).
os.environ["PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS"] = "1"

INTEGRATION_FILES = {
    "test_flows.py", "test_flow_graph.py", "test_faults_flow.py", "test_prefect_server.py", "test_dvc_repro.py",
    "test_dvc_remote.py", "test_mlflow_server.py", "test_pipeline.py", "test_style_pipeline.py", "test_service.py",
    "test_service_registry.py", "test_ddp.py", "test_bento.py", "test_demo_page.py",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: real servers, dvc repro, flows, torchrun (make test-integration)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in INTEGRATION_FILES or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.integration)


def pytest_unconfigure(config):
    shutil.rmtree(_HOMES, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_env_and_mlflow():
    """Whatever a test sets in os.environ or as MLflow's tracking URI is undone after it."""
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)
    if "mlflow" in sys.modules:  # never import it just for this
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
