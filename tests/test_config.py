"""One source of defaults: params.yaml restates the schema's defaults and cannot drift from them."""

import subprocess
import sys
from pathlib import Path

import yaml

from srstyle.config import MAX_IMAGE_PIXELS, Params, load_params

REPO = Path(__file__).resolve().parents[1]
DEMO_CONTENT = {"runs", "recipes", "models"}  # the demo's content: written in params.yaml only


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], tree


def _at(tree, dotted):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def drift(raw: dict) -> list[str]:
    """Every value of ``raw`` (params.yaml) that differs from the schema's default, or is unknown to it."""
    defaults = Params().model_dump(by_alias=True, mode="json")
    found = []
    for key, value in _leaves({k: v for k, v in raw.items() if k not in DEMO_CONTENT}):
        try:
            default = _at(defaults, key)
        except (KeyError, TypeError):
            found.append(f"{key}: in params.yaml but not in the schema")
            continue
        if value != default:
            found.append(f"{key}: params.yaml {value!r} != schema default {default!r}")
    return found


def test_params_yaml_equals_the_schema_defaults():
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    found = drift(raw)
    assert not found, "params.yaml and src/srstyle/config.py disagree:\n" + "\n".join(found)
    load_params(REPO / "params.yaml")  # and the file itself is valid


def test_a_drifted_value_is_caught():
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["train"]["batch_size"] += 1
    raw["style"]["gatys"]["loss"]["style_weight"] = 1000.0
    assert [f.split(":")[0] for f in drift(raw)] == ["train.batch_size", "style.gatys.loss.style_weight"]


def test_architecture_names_match_the_registry_and_config_stays_torch_free():
    from srstyle.models import MODELS, SR_ARCHITECTURES

    assert list(SR_ARCHITECTURES) == MODELS.names()
    code = "import sys, srstyle.config; assert 'torch' not in sys.modules, 'config imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": ""})


def test_max_pixels_is_one_named_setting():
    assert Params().validate_.max_pixels == MAX_IMAGE_PIXELS
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert raw["validate"]["max_pixels"] == MAX_IMAGE_PIXELS


def test_default_runs_include_espcn_edsr_and_srgan_with_budgets():
    params = load_params(REPO / "params.yaml")
    assert {"espcn_x3", "edsr_x4", "srgan_x4"} <= set(params.runs)
    for name in ("edsr_x4", "srgan_x4"):
        assert params.run(name).train.time_budget_s > 0
    assert 4 in params.patches.scales and "rgb" in params.patches.modes
