"""The Great Expectations half of validation: run the suite through a checkpoint and render its Data Docs.

Only GX's public API is used: an ephemeral context, a validation definition, a checkpoint with an
``UpdateDataDocsAction`` writing a local Data Docs site into a temporary folder. The site's validation page
becomes the stage's ``report.html``, made fit to be a DVC output: it loads nothing from the network (GX
pages link bootstrap, jQuery and vega from CDNs; those are dropped and GX's own stylesheet is inlined, so the
page reads offline), and nothing that changes between runs (run time, ids, load time) is left in it, so the
same table gives a byte-identical file on every machine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path

import pandas as pd

# A fixed run identity: the result depends on the data only (issue 15: byte-identical stage outputs).
RUN_NAME = "validate"
RUN_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)

_REMOTE = [
    re.compile(r"<link\b[^>]*\bhref=\"(?:https?:)?//[^\"]*\"[^>]*>\s*", re.I),
    re.compile(r"<script\b[^>]*\bsrc=\"(?:https?:)?//[^\"]*\"[^>]*>\s*</script>\s*", re.I),
    re.compile(r"<img\b[^>]*\bsrc=\"(?:https?:)?//[^\"]*\"[^>]*>", re.I),
    re.compile(r"<link\b[^>]*\bhref=\"\.\./[^\"]*\"[^>]*>\s*", re.I),  # favicon of the site we do not copy
]
_VOLATILE = [
    (re.compile(r"\b\d{8}T\d{6}\.\d{6}Z\b"), "20000101T000000.000000Z"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "00000000-0000-0000-0000-000000000000"),
]
# Without bootstrap: hide GX's walkthrough modal and keep collapsed details visible.
_OFFLINE_CSS = ".modal, .ge-walkthrough-modal { display: none; } .collapse { display: block; }"


def _offline_page(html: str, site: Path) -> str:
    for pattern in _REMOTE:
        html = pattern.sub("", html)
    html = re.sub(r"href=\"\.\./[^\"]*\"", 'href="#"', html)  # links into the site, which is not kept
    for pattern, fixed in _VOLATILE:
        html = pattern.sub(fixed, html)
    styles = site / "static" / "styles" / "data_docs_default_styles.css"
    css = styles.read_text(encoding="utf-8") if styles.is_file() else ""
    css = re.sub(r"url\([^)]*\)", "none", css)  # fonts and images of the site
    return html.replace("</head>", f"<style>\n{css}\n{_OFFLINE_CSS}\n</style>\n</head>", 1)


def stable_result(result_dict: dict) -> dict:
    """The validation result without its run-specific ids and load time."""
    result_dict = dict(result_dict)
    result_dict.pop("id", None)
    meta = dict(result_dict.get("meta") or {})
    for key in ("validation_id", "checkpoint_id"):
        meta.pop(key, None)
    result_dict["meta"] = meta
    text = json.dumps(result_dict, default=str)
    for pattern, fixed in _VOLATILE:  # expectation ids, load time
        text = pattern.sub(fixed, text)
    return json.loads(text)


def run_checkpoint(table: pd.DataFrame, expectations: list, suite_name: str = "raw_images"):
    """Validate ``table``; return (validation result, offline HTML of its Data Docs page)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    with tempfile.TemporaryDirectory(prefix="srstyle-gx-") as tmp:
        site = Path(tmp)
        context.add_data_docs_site(
            "report",
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        batch_definition = (
            context.data_sources.add_pandas("images").add_dataframe_asset("table").add_batch_definition_whole_dataframe("all")
        )
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch_definition, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=RUN_NAME,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["report"])],
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["file"]},
            )
        )
        outcome = checkpoint.run(
            batch_parameters={"dataframe": table}, run_id=RunIdentifier(run_name=RUN_NAME, run_time=RUN_TIME)
        )
        result = next(iter(outcome.run_results.values()))
        pages = sorted((site / "validations").rglob("*.html"))
        if len(pages) != 1:
            raise RuntimeError(f"Great Expectations wrote {len(pages)} validation pages, expected one")
        html = _offline_page(pages[0].read_text(encoding="utf-8"), site)
    return result, html
