"""train.precision (issue 20): auto decided once per machine and cached, autocast in the one skeleton, fp16
through the gradient scaler, exact resume at each precision, fp32 weights and files throughout."""

import json

import pytest
import torch

from srstyle.config import LoopConfig, parse_params
from srstyle.data.patches import make_patches
from srstyle.train import precision
from srstyle.train.loop import Trainer, fit
from srstyle.train.sr import load_model_file, train_sr
from tests.helpers import make_corpus

CPU = torch.device("cpu")


def tiny_params(**train):
    return parse_params({
        "seed": 7,
        "patches": {"scales": [3], "modes": ["y"], "hr_size": 24, "stride": 12},
        "runs": {"espcn_x3": {"model": "espcn", "scale": 3}},
        "train": {"steps": 12, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 4, "val_every": 4, "log_every": 2,
                  "threads": 1, "device": "cpu", **train},
        "models": {"espcn": {"channels": [8, 4]}},
    })


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    raw, validated = make_corpus(root)
    make_patches(validated, raw, root / "patches", tiny_params().patches, seed=0, max_pixels=10**7, progress=False)
    return root / "patches"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache" / "train_precision.json"
    monkeypatch.setenv(precision.CACHE_ENV, str(path))
    return path


def _weights(path):
    return load_model_file(path).state_dict()


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# --- auto -------------------------------------------------------------------------------------------------


def test_explicit_precisions_pass_and_a_typo_is_refused():
    assert precision.resolve_precision("bf16", CPU).precision == "bf16"
    assert precision.resolve_precision("fp32", CPU).reason == "set in train.precision"
    with pytest.raises(ValueError, match="train.precision"):
        precision.resolve_precision("fp8", CPU)
    with pytest.raises(ValueError, match="precision"):
        LoopConfig(precision="half")


@pytest.mark.parametrize("speedup, expected", [(2.4, "bf16"), (1.12, "fp32"), (0.72, "fp32")])
def test_auto_on_a_cpu_follows_the_cached_measurement_of_this_machine(cache, monkeypatch, speedup, expected):
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({precision.machine_key(): {"speedup": speedup},
                                 "another machine | flags x | torch 0": {"speedup": 99.0}}))
    monkeypatch.setattr(precision, "measure_cpu_bf16", lambda: pytest.fail("measured although cached"))
    choice = precision.resolve_precision("auto", CPU)
    assert choice.precision == expected
    assert f"{speedup:.2f}x" in choice.reason and "cached" in choice.reason


def test_auto_measures_once_per_machine_and_caches_atomically(cache, monkeypatch):
    calls = []

    def fake_measure():
        calls.append(1)
        return {"fp32_steps_per_s": 10.0, "bf16_steps_per_s": 30.0, "speedup": 3.0}

    monkeypatch.setattr(precision, "measure_cpu_bf16", fake_measure)
    monkeypatch.setattr(precision.cpu_bf16_measurement, "__defaults__", (fake_measure,))
    first = precision.resolve_precision("auto", CPU)
    second = precision.resolve_precision("auto", CPU)
    assert calls == [1] and first.precision == second.precision == "bf16"
    assert "measured now" in first.reason and "cached" in second.reason
    stored = json.loads(cache.read_text())
    assert stored[precision.machine_key()]["speedup"] == 3.0
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary file left behind

    cache.write_text("{not json")  # a damaged cache is measured again, not fatal
    assert precision.resolve_precision("auto", CPU).precision == "bf16" and calls == [1, 1]


def test_a_measurement_on_a_busy_machine_is_neither_trusted_nor_cached(cache, monkeypatch):
    busy = lambda: {"speedup": 3.0, "load": 7.5, "cpus": 2}  # noqa: E731 - other jobs on a 2-core machine
    monkeypatch.setattr(precision.cpu_bf16_measurement, "__defaults__", (busy,))
    monkeypatch.setattr(precision, "_BUSY", {})
    choice = precision.resolve_precision("auto", CPU)
    assert choice.precision == "fp32" and "busy" in choice.reason and "load 7.5" in choice.reason
    assert not cache.exists()
    # within one process it is not measured again (a test session, a flow running many trainings)
    monkeypatch.setattr(precision.cpu_bf16_measurement, "__defaults__", (lambda: pytest.fail("measured twice"),))
    assert precision.resolve_precision("auto", CPU).precision == "fp32"


def test_the_real_probe_measures_both_nets_and_leaves_the_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    m = precision.measure_cpu_bf16(steps=1, rounds=1)
    for net in ("espcn", "edsr"):
        assert m[net]["fp32_steps_per_s"] > 0 and m[net]["bf16_steps_per_s"] > 0
    assert m["speedup"] == min(m["espcn"]["speedup"], m["edsr"]["speedup"]) and m["load"] >= 0
    assert torch.equal(torch.rand(3), expected)


# --- the skeleton at each precision ------------------------------------------------------------------------


@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_resume_is_exact_at_reduced_precision_and_files_stay_fp32(patches, tmp_path, prec):
    params = tiny_params(precision=prec)
    straight = train_sr(params, "espcn_x3", patches, tmp_path / "a", progress=False)
    train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False, stop_after=5)
    resumed = train_sr(params, "espcn_x3", patches, tmp_path / "b", progress=False)
    a, b = _weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt")
    assert _same(a, b) and resumed.final_val_psnr == straight.final_val_psnr
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()
    assert all(v.dtype == torch.float32 for v in a.values())
    ckpt = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in ckpt["modules"]["model"].values())
    metrics = json.loads((tmp_path / "a" / "train_metrics.json").read_text())
    assert metrics["precision"] == prec and metrics["precision_reason"] == "set in train.precision"
    if prec == "fp16":  # the gradient scaler's state is part of the exact resume
        assert json.loads(ckpt["amp"])["scaler"]["scale"] > 0


def test_precision_changes_the_run_and_its_fingerprint(patches, tmp_path, cache):
    fp32 = train_sr(tiny_params(precision="fp32"), "espcn_x3", patches, tmp_path / "fp32", progress=False)
    train_sr(tiny_params(precision="bf16"), "espcn_x3", patches, tmp_path / "mixed", progress=False, stop_after=4)
    # a bf16 checkpoint does not resume an fp32 run: the fp32 run starts afresh and equals the plain one
    again = train_sr(tiny_params(precision="fp32"), "espcn_x3", patches, tmp_path / "mixed", progress=False)
    assert _same(_weights(tmp_path / "fp32" / "model.pt"), _weights(tmp_path / "mixed" / "model.pt"))
    assert again.final_val_psnr == fp32.final_val_psnr
    bf16 = train_sr(tiny_params(precision="bf16"), "espcn_x3", patches, tmp_path / "bf16", progress=False)
    assert not _same(_weights(tmp_path / "fp32" / "model.pt"), _weights(tmp_path / "bf16" / "model.pt"))
    assert abs(bf16.final_val_psnr - fp32.final_val_psnr) < 0.5  # autocast ran, and trained the same net
    # auto where this machine measured bf16 slow is fp32: the same run as an explicit fp32 (checkpoint too)
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({precision.machine_key(): {"speedup": 0.7}}))
    train_sr(tiny_params(precision="fp32"), "espcn_x3", patches, tmp_path / "auto", progress=False, stop_after=4)
    auto = train_sr(tiny_params(precision="auto"), "espcn_x3", patches, tmp_path / "auto", progress=False)
    assert auto.final_val_psnr == fp32.final_val_psnr
    assert _same(_weights(tmp_path / "fp32" / "model.pt"), _weights(tmp_path / "auto" / "model.pt"))
    assert json.loads((tmp_path / "auto" / "train_metrics.json").read_text())["precision"] == "fp32"


def _toy(tmp_path, prec, through_helper):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dtypes = []

    def step(state, i, plan):
        x = torch.randn(8, 4)
        out = model(x)
        dtypes.append(out.dtype)
        loss = ((out.float() - x.sum(1, keepdim=True)) ** 2).mean()
        if through_helper:
            state.optimize(loss, opt)
        else:
            opt.zero_grad()
            loss.backward()
            opt.step()
        return {"train_loss": loss.detach()}

    t = Trainer(name="toy", out_dir=tmp_path, cfg=LoopConfig(steps=4, log_every=2, checkpoint_every=4, precision=prec),
                seed=0, n_items=10, model=model, optimizers={"model": opt}, step=step, fingerprint="toy",
                save_model=lambda path, m, steps: None)
    return t, dtypes, model


def test_the_step_runs_under_autocast_and_fp16_insists_on_the_scaler(tmp_path):
    t, dtypes, model = _toy(tmp_path / "a", "bf16", through_helper=True)
    fit(t, progress=False)
    assert set(dtypes) == {torch.bfloat16} and model.weight.dtype == torch.float32
    t, dtypes, _ = _toy(tmp_path / "b", "fp32", through_helper=False)  # a plain step still works in fp32
    fit(t, progress=False)
    assert set(dtypes) == {torch.float32}
    t, _, _ = _toy(tmp_path / "c", "fp16", through_helper=False)
    with pytest.raises(RuntimeError, match="state.optimize"):
        fit(t, progress=False)
