"""Test tiers and isolation.

Tiers: ``integration`` (real servers, `dvc repro`, flows, torchrun: the files in INTEGRATION_FILES, and every
test marked ``slow``) and the unit tier (everything else). `make test-fast` runs the unit tier,
`make test` both.

Isolation: a developer's MLFLOW_TRACKING_URI (a team server), SRSTYLE_ROOT, PREFECT_API_URL, BENTOML_HOME...
never reach a test; PREFECT_HOME and BENTOML_HOME point into a session temp folder; every test gets back the
environment and MLflow's global tracking URI it started with (PATH and PYTHONPATH are left as they are).

Shared, read-only, built once per session (what made the suite slow was building them once per test module):
``style_exports`` (the fast and meta style graphs: exporting one costs 5-10 s),
``model_dir`` (briefly trained SR nets and those style graphs as ONNX: the service, registry, Bento and soak tests),
``cli_models`` (the CLI tests' two ONNX files) and
``tiny_repro`` (a real `dvc repro` of every stage of the tiny project). A test that changes one works on a copy
(``tests.helpers.copy_project``, or a copy of the ONNX files it needs): copying costs seconds, rebuilding minutes.
"""

import os
import shutil
import subprocess
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
# The per-machine measurements (training precision, inference engine) are cached per session, never in ~/.cache.
os.environ["SRSTYLE_PRECISION_CACHE"] = os.path.join(_HOMES, "train_precision.json")
os.environ["SRSTYLE_CACHE_DIR"] = os.path.join(_HOMES, "cache")
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


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory):
    """An MLflow SQLite store holding its schema and nothing else. Creating one runs MLflow's migrations (~1.7 s);
    a test copies this file to the path its tracking URI names instead (milliseconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlruns.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def tiny_sr_onnx(tmp_path_factory):
    """An untrained ESPCN x3 (4-4 channels) as ONNX: the model the registry tests register. Registering writes
    beside the file, so a test copies it into its own folder first."""
    import torch

    from srstyle.export.onnx import export_sr_onnx
    from srstyle.models import build_model

    torch.manual_seed(0)
    return export_sr_onnx(build_model("espcn", 3, channels=[4, 4]), tmp_path_factory.mktemp("tiny-sr") / "m.onnx")


@pytest.fixture(scope="session")
def style_exports(tmp_path_factory):
    """The style graphs (``tests.service_helpers.export_style_models``): a fitted fast net for style STYLE and an
    untrained meta network at style size 48, with their PyTorch modules. Read-only: copy a file before changing it."""
    from tests.service_helpers import export_style_models

    return export_style_models(tmp_path_factory.mktemp("style-exports"))


@pytest.fixture(scope="session")
def cli_models(tmp_path_factory, style_exports):
    """(espcn_x3.onnx, the fast style export of ``style_exports``): a briefly trained ESPCN x3 and a fast style
    net, the models the CLI tests (test_cli.py, test_faults_cli.py) run. Read-only."""
    from srstyle.export.onnx import export_sr_onnx
    from tests.helpers import trained_espcn

    root = tmp_path_factory.mktemp("cli-models")
    return export_sr_onnx(trained_espcn(steps=40), root / "espcn_x3.onnx"), style_exports.fast


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, style_exports):
    """The service's model folder (SRSTYLE_SERVE_DIR layout): trained ESPCN x3, an RGB EDSR x3, a fast style net
    and the meta network as ONNX files. Read-only: copy the files a test needs before changing them."""
    from tests.service_helpers import export_models

    return export_models(tmp_path_factory.mktemp("served") / "models", style_exports, rgb=True)


@pytest.fixture(scope="session")
def tiny_repro(tmp_path_factory):
    """``tests.helpers.make_tiny_project`` (espcn_x3 and fsrcnn_x3, the style chain on TINY_STYLE) after a real
    `dvc repro` of every stage: (root, env, log of the repro). Read-only: a test that reruns stages, commits or
    trains works on ``copy_project(root, ...)`` (test_dvc_repro.py's commit, test_faults_flow.py's run cache,
    test_flows.py's Prefect flow runs)."""
    from tests.helpers import make_tiny_project, tiny_env

    root = make_tiny_project(tmp_path_factory.mktemp("tiny-repro") / "proj",
                             extra=("bentofile.yaml", "bento_service.py", "constraints.txt"))  # test_flows packages
    env = tiny_env()
    proc = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"dvc repro of the tiny project failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return root, env, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on 127.0.0.1 (its own PREFECT_HOME, no UI) for the session: (api URL, base
    folder). Shared by test_prefect_server.py and test_faults_flow.py; each test cleans up what it reads (the
    deployments) or only adds runs of its own."""
    from pathlib import Path

    from tests.servers import free_port, server

    base = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(base / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    api = f"http://127.0.0.1:{port}/api"
    with server(cmd, f"{api}/health", base / "server.log", env=env) as (_, startup):
        print(f"prefect server ready in {startup:.1f} s")
        yield api, base


@pytest.fixture(scope="module")
def prefect_session_api(prefect_server):
    """In-process flows of the module report to the session's Prefect server (``prefect_server``) instead of a
    temporary server of their own (prefect_test_harness: ~8 s to start per module). Tests that share it find
    their own runs by flow-run id or by names only they use."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server[0]}):
        yield prefect_server[0]
