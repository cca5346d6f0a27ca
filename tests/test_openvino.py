"""The OpenVINO backend and ``engine: auto``: same outputs as onnxruntime, bf16 agreement, buffers, threads,
new shapes without leaks, a machine without OpenVINO, the auto gates, the measurement cache, and the export
stage's per-variant evaluation that auto obeys."""

import json
import resource
import sys
import threading

import numpy as np
import pytest

from srstyle.config import EngineConfig, Int8Config
from srstyle.engine import EngineError, OrtEngine, OvEngine, open_model, open_sr_engine, output_psnr
from srstyle.engine_auto import decide, precision_record, record_path
from srstyle.export.onnx import export_sr_onnx
from srstyle.inference import load_sr_model
from tests.helpers import make_corpus, trained_espcn

pytestmark = pytest.mark.timeout(600)
ov = pytest.importorskip("openvino")

ORT32 = EngineConfig(backend="onnxruntime", precision="fp32", intra_op_threads=1)
OV32 = EngineConfig(backend="openvino", precision="fp32", intra_op_threads=1)
OV16 = EngineConfig(backend="openvino", precision="bf16", intra_op_threads=1)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SRSTYLE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("ov") / "espcn_x3.onnx"
    export_sr_onnx(trained_espcn(), path)
    return path


def _x(seed, h=29, w=41):
    # smooth, photo-like luma: agreement on white noise would measure bf16 rounding of noise, not of images
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    return np.clip(0.5 + 0.3 * np.sin(rng.uniform(3, 8) * xx) * np.cos(rng.uniform(3, 8) * yy)
                   + rng.normal(0, 0.02, (h, w)), 0, 1).astype(np.float32)[None, None]


def test_openvino_fp32_equals_onnxruntime_and_bf16_agrees(exported):
    x = _x(0)
    ref = OrtEngine(exported, ORT32).run(x)
    f32 = open_sr_engine(exported, OV32)
    assert isinstance(f32, OvEngine) and f32.precision == "fp32"
    assert f32.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert np.max(np.abs(f32.run(x) - ref)) <= 1e-4
    bf16 = open_sr_engine(exported, OV16)
    got = bf16.run(x)
    assert got.shape == ref.shape == (1, 1, 87, 123)
    # bf16 keeps 8 mantissa bits: close to fp32 on images (>= 40 dB), but not equal where bf16 is really used
    assert output_psnr(got, ref) >= 40
    from srstyle.engine import openvino_has_bf16

    if openvino_has_bf16():
        assert np.max(np.abs(got - ref)) > 1e-4
    assert bf16.describe()["backend"] == "openvino" and bf16.describe()["precision"] == "bf16"


def test_output_buffer_new_shapes_and_no_leak(exported):
    eng = open_sr_engine(exported, OV32)
    x = _x(1, 20, 30)
    out = np.full((1, 1, 60, 90), -7.0, np.float32)
    assert eng.run(x, out=out) is out and np.max(np.abs(out - OrtEngine(exported, ORT32).run(x))) <= 1e-4
    # the plain call after a bound one, at another size (a bound output tensor has a fixed shape)
    assert eng.run_feeds({"lr": _x(2, 11, 13)})[0].shape == (1, 1, 33, 39)
    with pytest.raises(EngineError, match="output buffer"):
        eng.run(x, out=np.empty((1, 1, 60, 91), np.float32))
    with pytest.raises(EngineError, match=r"expects \[N,1,H,W\]"):
        eng.run(np.zeros((1, 3, 8, 8), np.float32))
    # 1,000 calls over 50 input sizes, as a service sees: one compiled model, no growth per shape
    shapes = [(8 + i % 10, 9 + i // 10) for i in range(50)]
    for h, w in shapes:
        eng.run(np.zeros((1, 1, h, w), np.float32))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(1000):
        h, w = shapes[i % 50]
        r = eng.run(np.full((1, 1, h, w), 0.5, np.float32))
        assert r.shape == (1, 1, 3 * h, 3 * w)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 50, f"peak RSS grew by {grown_mb:.0f} MB over 1,000 calls"


def test_threads_share_one_openvino_engine(exported):
    eng = open_sr_engine(exported, OV32)
    ref = OrtEngine(exported, ORT32)
    inputs = [_x(i, 16 + i, 24) for i in range(4)]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(5):
            results[i] = eng.run(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, r in zip(inputs, results):
        assert np.max(np.abs(r - ref.run(x))) <= 1e-4


def test_without_openvino_everything_runs_on_onnxruntime(exported, monkeypatch, caplog):
    import srstyle.engine as engine

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    monkeypatch.setattr(engine, "_OV_CORE", None)
    assert engine.openvino_core() is None
    with caplog.at_level("WARNING"):
        eng = open_sr_engine(exported, EngineConfig(backend="openvino", precision="bf16"))
    assert isinstance(eng, OrtEngine) and eng.precision == "fp32"
    assert "srstyle[openvino]" in caplog.text
    auto = load_sr_model(exported)  # auto: a single candidate, nothing to measure
    assert isinstance(auto.engine, OrtEngine) and auto.engine.decision is None


def test_explicit_settings_win_and_are_never_measured(exported, monkeypatch):
    import srstyle.engine_auto as auto

    monkeypatch.setattr(auto, "measure", lambda *a, **k: pytest.fail("explicit settings must not measure"))
    assert isinstance(open_sr_engine(exported, ORT32), OrtEngine)
    assert isinstance(open_sr_engine(exported, OV16), OvEngine)
    with pytest.raises(EngineError, match="bf16 needs backend openvino"):
        open_sr_engine(exported, EngineConfig(backend="onnxruntime", precision="bf16"))


def test_auto_measures_once_and_caches(exported, tmp_path, monkeypatch):
    import srstyle.engine_auto as auto

    cfg = EngineConfig(intra_op_threads=1, auto_probe_size=64)
    first = open_sr_engine(exported, cfg)
    assert first.decision["measured"].keys() >= {"onnxruntime/fp32", "openvino/fp32"}
    # bf16 (where the CPU has it) and int8 have no evaluation record yet: never measured, never chosen
    assert first.precision == "fp32"
    files = list((tmp_path / "cache" / "engine").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["cpu"]["cores"]
    monkeypatch.setattr(auto, "measure", lambda *a, **k: pytest.fail("second load must use the cache"))
    second = open_sr_engine(exported, cfg)
    assert second.decision["chosen"] == first.decision["chosen"]
    assert type(second) is type(first)


def _m(**ms):
    return {k.replace("__", "/"): {"ms": v[0], "agreement_db": v[1]} for k, v in ms.items()}


def test_auto_gates():
    cfg = EngineConfig()
    usable = {"openvino_bf16": {"usable": 1, "drop_db": 0.01}, "onnxruntime_int8": {"usable": 1, "drop_db": 0.02}}
    # the AMX case: bf16 4x faster, agrees, evaluated usable -> chosen
    m = _m(onnxruntime__fp32=(50, 999), openvino__fp32=(50, 120), openvino__bf16=(13, 56), onnxruntime__int8=(45, 47))
    assert decide(m, usable, cfg, True)[0] == "openvino/bf16"
    # same speeds, no record: bf16 and int8 are not chosen; fp32 stays
    assert decide(m, None, cfg, True)[0] == "onnxruntime/fp32"
    # agreement below 50 dB excludes even a fast, "usable" variant
    m2 = _m(onnxruntime__fp32=(50, 999), openvino__bf16=(13, 45))
    assert decide(m2, usable, cfg, True)[0] == "onnxruntime/fp32"
    # evaluation drop above auto_max_drop_db or marked unusable: excluded
    assert decide(m, {"openvino_bf16": {"usable": 1, "drop_db": 0.08}}, cfg, True)[0] == "onnxruntime/fp32"
    assert decide(m, {"openvino_bf16": {"usable": 0, "drop_db": 0.0}}, cfg, True)[0] == "onnxruntime/fp32"
    # int8 must be >= 1.3x the best float variant: 1.25x is not enough, 1.8x is
    m3 = _m(onnxruntime__fp32=(50, 999), onnxruntime__int8=(40, 55))
    assert decide(m3, usable, cfg, True)[0] == "onnxruntime/fp32"
    m4 = _m(onnxruntime__fp32=(50, 999), onnxruntime__int8=(28, 55))
    assert decide(m4, usable, cfg, True)[0] == "onnxruntime/int8"
    # noise margin: 3 % faster is not a reason to leave onnxruntime fp32, 20 % is
    assert decide(_m(onnxruntime__fp32=(50, 999), openvino__fp32=(48.5, 130)), None, cfg, True)[0] == "onnxruntime/fp32"
    assert decide(_m(onnxruntime__fp32=(50, 999), openvino__fp32=(40, 130)), None, cfg, True)[0] == "openvino/fp32"
    # precision explicit (int8): only the backend is chosen, the fastest, no gates
    m5 = _m(onnxruntime__int8=(40, None), openvino__int8=(30, None))
    assert decide(m5, None, cfg, False)[0] == "openvino/int8"


def test_export_evaluation_marks_variants_and_auto_obeys(exported, tmp_path, monkeypatch):
    from srstyle.export.precision import evaluate_precisions, runnable_variants
    from srstyle.export.quantize import quantize_sr_onnx

    model = tmp_path / "m" / "espcn_x3.onnx"
    model.parent.mkdir()
    model.write_bytes(exported.read_bytes())
    patches = np.concatenate([_x(i, 16, 16) for i in range(32)])
    quantize_sr_onnx(model, patches, Int8Config(calibration_batch=16))
    raw, validated = make_corpus(tmp_path / "data", n_train=1, n_val=2, size=(60, 75))
    pairs = runnable_variants(model)
    assert {("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")} <= set(pairs)
    record = evaluate_precisions(model, validated, raw, engine=EngineConfig(intra_op_threads=1), max_drop_db=0.1)
    saved = json.loads(record_path(model).read_text())
    assert saved == json.loads(json.dumps(record)) and saved["images_val"] == 2
    ref = saved["variants"]["onnxruntime_fp32"]
    assert ref["drop_db"] == 0 and ref["usable"] == 1
    pytest.importorskip("sklearn")
    assert saved["images_unseen"] == 3 and ref["psnr_unseen"] > 15
    v = saved["variants"]["openvino_fp32"]
    assert abs(v["drop_db"]) < 0.01 and v["usable"] == 1 and v["agreement_db"] > 80
    for key, s in saved["variants"].items():
        assert s["usable"] == int(key == "onnxruntime_fp32" or s["drop_db"] <= 0.1)
        assert s["drop_db"] == max(d for d in (s["drop_val_db"], s["drop_unseen_db"]) if d is not None)
    assert precision_record(model) == saved["variants"]
    # a record for other files (the model re-exported) is ignored, not trusted
    model.write_bytes(model.read_bytes() + b"\0")
    assert precision_record(model) is None
    # auto never picks a variant the record marks unusable, however fast it measured
    import srstyle.engine_auto as auto

    model.write_bytes(exported.read_bytes())
    bad = {**saved, "variants": {**saved["variants"], "onnxruntime_int8": {**saved["variants"]["onnxruntime_int8"],
                                                                         "usable": 0, "drop_db": 0.5}}}
    record_path(model).write_text(json.dumps(bad))
    monkeypatch.setattr(auto, "measure", lambda engines, feeds, rounds=4: {
        k: {"ms": 1.0 if k.endswith("int8") else 50.0, "agreement_db": 60.0} for k in engines})
    chosen = open_sr_engine(model, EngineConfig(intra_op_threads=1))
    assert chosen.precision != "int8"
    assert any("onnxruntime/int8" in n for n in chosen.decision["notes"])


def test_style_models_open_on_both_backends(style_exports):
    x = np.random.default_rng(0).random((1, 3, 40, 48), dtype=np.float32)
    a = open_model(style_exports.fast, ORT32).run_feeds({"content": x})[0]
    b = open_model(style_exports.fast, OV32).run_feeds({"content": x})[0]
    assert np.max(np.abs(a - b)) <= 1e-3


def test_style_graphs_get_a_precision_record_that_auto_obeys(style_exports, tmp_path, monkeypatch):
    """The style export's evaluation: OpenVINO variants of the fast and meta graphs against onnxruntime fp32
    on unseen photos (the meta network end to end, paintings -> weights -> photo); auto then weighs them."""
    import shutil

    pytest.importorskip("sklearn")
    import srstyle.engine_auto as auto
    from srstyle.data.style_data import embedded_styles_dir
    from srstyle.export.precision import evaluate_style_precisions
    from srstyle.predict.style import MetaStylePredictor

    for src, dst in ((style_exports.fast, "fast_x.onnx"), (style_exports.meta_dir / "metanet.onnx", "metanet.onnx"),
                     (style_exports.meta_dir / "transformer.onnx", "transformer.onnx")):
        shutil.copy(src, tmp_path / dst)
    paintings = sorted(embedded_styles_dir().glob("*.jpg"))[:2]
    records = evaluate_style_precisions(tmp_path, ["x"], paintings, min_agreement_db=40.0, size=96,
                                        engine=EngineConfig(intra_op_threads=1))
    assert set(records) == {"fast_x.onnx", "metanet.onnx", "transformer.onnx"}
    for name, rec in records.items():
        assert json.loads(record_path(tmp_path / name).read_text()) == rec and rec["images_unseen"] == 3
        assert rec["variants"]["openvino_fp32"]["agreement_db"] > 60 and rec["variants"]["openvino_fp32"]["usable"]
        for key, v in rec["variants"].items():
            assert v["usable"] == int(key == "onnxruntime_fp32" or v["agreement_db"] >= 40.0)
    assert records["metanet.onnx"]["paintings"] == 2
    # the meta transformer keeps its ONNX input names under OpenVINO (a compiled port has several)
    meta = MetaStylePredictor.from_onnx(tmp_path / "metanet.onnx", tmp_path / "transformer.onnx", OV32)
    assert meta.engines[1].input_names == ["content", "weights"]

    # auto measures the OpenVINO variants of a style graph only with a usable record, and obeys it
    monkeypatch.setattr(auto, "measure", lambda engines, feeds, rounds=4: {
        k: {"ms": 10.0 if k.startswith("openvino") else 50.0, "agreement_db": 60.0} for k in engines})
    chosen = open_model(tmp_path / "fast_x.onnx", EngineConfig(intra_op_threads=1))
    assert chosen.decision["chosen"].startswith("openvino/")
    assert not any("no evaluation" in n for n in chosen.decision["notes"]), chosen.decision
    rec = json.loads(record_path(tmp_path / "fast_x.onnx").read_text())
    for v in rec["variants"].values():
        v["usable"] = int(v is rec["variants"]["onnxruntime_fp32"])
    record_path(tmp_path / "fast_x.onnx").write_text(json.dumps(rec))
    gated = open_model(tmp_path / "fast_x.onnx", EngineConfig(intra_op_threads=1, precision="auto"))
    assert gated.decision["chosen"].endswith("/fp32"), gated.decision
    assert any("marked unusable" in n for n in gated.decision["notes"] if "bf16" in n) or not any(
        "bf16" in k for k in rec["variants"])


def test_cli_backend_and_precision_flags(exported, tmp_path, caplog):
    from PIL import Image

    from srstyle.cli import main
    from tests.helpers import photo

    src = tmp_path / "in.png"
    Image.fromarray(photo(30, 40, seed=2)).save(src)
    with caplog.at_level("INFO"):
        assert main(["upscale", str(src), str(tmp_path / "a.png"), "--model", str(exported), "--backend", "openvino",
                     "--precision", "bf16", "--params", str(tmp_path / "none.yaml")]) == 0
        assert main(["upscale", str(src), str(tmp_path / "b.png"), "--model", str(exported), "--backend", "onnxruntime",
                     "--precision", "fp32", "--params", str(tmp_path / "none.yaml")]) == 0
    a = np.asarray(Image.open(tmp_path / "a.png"), np.float64)
    b = np.asarray(Image.open(tmp_path / "b.png"), np.float64)
    assert a.shape == b.shape == (90, 120, 3)
    from srstyle.engine import openvino_has_bf16

    assert np.abs(a - b).max() <= 3  # agrees to a few 8-bit levels
    if openvino_has_bf16():
        assert np.abs(a - b).max() > 0  # and bf16 really ran: not bit-equal to fp32
