"""Entry point of the built Bento (bentofile.yaml `service:`). `bentoml serve <bento>` puts only the Bento's
source folder on sys.path and does not apply bentofile `envs`, so this module sets up what the Bento needs
from its own location: the srstyle package under src/, the bundled champion models (serve_models/) and
params.yaml. Outside a Bento, use `srstyle.serving.service:SRStyle` (`make serve`)."""

import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE / "src") not in sys.path:
    sys.path.insert(0, str(_HERE / "src"))
os.environ.setdefault("SRSTYLE_SERVE_DIR", str(_HERE / "serve_models"))
os.environ.setdefault("SRSTYLE_PARAMS", str(_HERE / "params.yaml"))

from srstyle.serving.service import SRStyle  # noqa: E402

__all__ = ["SRStyle"]
