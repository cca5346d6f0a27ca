"""The one inference engine for exported models: onnxruntime or OpenVINO, in the precision that pays here.

Every consumer (the prediction core :mod:`srstyle.predict`, and through it ``srstyle upscale|stylize`` on
images and video, the precision evaluation of the export stage, the BentoML service) opens an ``.onnx``
file with :func:`open_model` (:func:`open_sr_engine` for SR models). PyTorch is only the CLI's fallback for
a trainer ``model.pt`` that has not been exported (see :mod:`srstyle.inference`).

Backends and precisions (``engine.backend``, ``engine.precision`` in params.yaml), all from the same files:

* ``onnxruntime`` ``fp32`` (``<name>.onnx``) and ``int8`` (``<name>.int8.onnx``, static QDQ quantisation,
  :mod:`srstyle.export.quantize`); :class:`OnnxModel` / :class:`OrtEngine`;
* ``openvino`` (the optional extra ``srstyle[openvino]``) ``fp32``, ``bf16`` (the fp32 file run with
  ``INFERENCE_PRECISION_HINT=bf16``: AMX-BF16 or AVX512-BF16 units where the CPU has them) and ``int8``
  (the same QDQ file); :class:`OvModel` / :class:`OvEngine`.

``auto`` (the default of both) is decided by :mod:`srstyle.engine_auto`: measured once per machine and
model file, cached, logged; explicit settings always win. Where OpenVINO is not installed, everything
runs on onnxruntime (an explicit ``openvino`` setting falls back with a warning naming the extra).

What matters on a small CPU, all set from ``engine:`` in params.yaml:

* ``intra_op_threads``: the threads one convolution is split over (0 = one per physical core), for both
  backends (OpenVINO: ``INFERENCE_NUM_THREADS``);
* onnxruntime ``graph_optimization: all``: constant folding, Conv+activation fusion and the NCHWc layout
  transform that lets MLAS run the 3x3/5x5 convolutions near the machine's matmul rate;
* ``allow_spinning``: idle ORT threads spin waiting for work; on a machine where decode and encode threads
  share the cores with inference (the video path, the service), spinning steals their time, so it is turned
  off there; the same setting turns OpenVINO's thread pinning off (pinned inference threads would keep
  decode/encode off "their" cores);
* ``io_binding``: the output is written straight into a caller-owned preallocated buffer (onnxruntime IO
  binding; OpenVINO: the buffer set as the request's output tensor).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import numpy as np

from .config import EngineConfig

log = logging.getLogger(__name__)

INT8_SUFFIX = ".int8.onnx"
BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
OPENVINO_EXTRA = "pip install 'srstyle[openvino]'"

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


class EngineError(ValueError):
    """An ONNX file the engine cannot serve; the message names the file and what to do."""


def variant_path(path: Path | str, precision: str) -> Path:
    """The file of ``precision`` that belongs to the exported model ``path``: ``int8`` is ``<name>.int8.onnx``;
    ``fp32`` and ``bf16`` (computed from the fp32 weights by OpenVINO) are ``<name>.onnx``."""
    path = Path(path)
    name = path.name
    base = name[: -len(INT8_SUFFIX)] if name.endswith(INT8_SUFFIX) else path.stem
    if precision == "int8":
        return path.with_name(base + INT8_SUFFIX)
    if precision in ("fp32", "bf16"):
        return path.with_name(base + ".onnx")
    raise EngineError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")


def output_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, peak 1.0) between two model outputs on the [0, 1] scale, after clipping as a saved image."""
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


# --- OpenVINO: optional ------------------------------------------------------------------------------------

_OV_LOCK = threading.Lock()
_OV_CORE = None


def openvino_core():
    """The process's one ``openvino.Core`` (it owns the plugin and its thread pools), or None where the
    ``openvino`` package is not installed."""
    global _OV_CORE
    with _OV_LOCK:
        if _OV_CORE is None:
            try:
                import openvino as ov
            except ImportError:
                return None
            _OV_CORE = ov.Core()
        return _OV_CORE


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX512-BF16 or AMX); elsewhere a bf16 hint
    would be emulated or ignored, so ``auto`` does not consider it."""
    core = openvino_core()
    return core is not None and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def session_options(cfg: EngineConfig):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[cfg.graph_optimization])
    if cfg.intra_op_threads:
        options.intra_op_num_threads = cfg.intra_op_threads
    options.inter_op_num_threads = max(cfg.inter_op_threads, 1)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.allow_spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1" if cfg.allow_spinning else "0")
    return options


def openvino_config(cfg: EngineConfig, precision: str) -> dict:
    """``compile_model`` properties: the precision hint, one latency-optimised stream (requests from several
    threads queue on it rather than splitting the cores into streams), the thread count, pinning."""
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
              "PERFORMANCE_HINT": cfg.openvino_hint.upper(), "ENABLE_CPU_PINNING": bool(cfg.allow_spinning)}
    if cfg.intra_op_threads:
        config["INFERENCE_NUM_THREADS"] = cfg.intra_op_threads
    return config


def _read_meta(path: Path) -> dict[str, str]:
    import onnx

    if not path.is_file():
        raise EngineError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a bad file
        raise EngineError(f"{path}: not a readable ONNX file ({exc})") from None
    return {p.key: p.value for p in proto.metadata_props}


# --- one model on one backend -------------------------------------------------------------------------------

class OnnxModel:
    """One onnxruntime session over an srstyle-exported ONNX graph (SR or style), with its metadata.

    Loading reads ``metadata_props`` first (cheap) so a wrong or corrupt file fails with a clear message.
    """

    backend = "onnxruntime"

    def __init__(self, path: Path | str, cfg: EngineConfig | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.cfg = cfg or EngineConfig()
        self.meta = _read_meta(self.path)
        self.precision = self.meta.get("precision", "int8" if self.path.name.endswith(INT8_SUFFIX) else "fp32")
        self.decision: dict | None = None  # set by engine_auto when ``auto`` chose this engine
        self._check_meta()
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(self.cfg),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise EngineError(f"{self.path}: onnxruntime cannot load it ({exc})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_shapes = [list(i.shape) for i in self.session.get_inputs()]

    def _check_meta(self) -> None:
        """Subclasses refuse files that are not theirs before a session is built."""

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The plain session call (thread-safe in onnxruntime)."""
        return self.session.run(self.output_names, feeds)


class OvModel:
    """One OpenVINO compiled model over the same ONNX file: ``fp32``/``bf16`` from ``<name>.onnx``, ``int8``
    from the QDQ ``<name>.int8.onnx``; the same interface as :class:`OnnxModel`.

    The model is compiled once with dynamic N/H/W (OpenVINO's CPU plugin runs dynamic shapes without
    recompiling: a new input size costs one shape inference, not a compilation, see tests/test_openvino.py).
    Each calling thread gets its own infer request (a request is not thread-safe); the requests live with the
    thread, so a pool of request threads never grows them beyond its size.
    """

    backend = "openvino"

    def __init__(self, path: Path | str, cfg: EngineConfig | None = None, precision: str | None = None):
        self.path = Path(path)
        self.cfg = cfg or EngineConfig()
        self.meta = _read_meta(self.path)
        file_precision = self.meta.get("precision", "int8" if self.path.name.endswith(INT8_SUFFIX) else "fp32")
        self.precision = precision or file_precision
        if (self.precision == "int8") != (file_precision == "int8"):
            raise EngineError(f"{self.path}: a {file_precision} file cannot run as {self.precision}; "
                              f"use {variant_path(self.path, self.precision).name}")
        self.decision: dict | None = None
        self._check_meta()
        core = openvino_core()
        if core is None:
            raise EngineError(f"{self.path}: OpenVINO is not installed ({OPENVINO_EXTRA}), or use engine.backend: onnxruntime")
        try:
            self.compiled = core.compile_model(str(self.path), "CPU", openvino_config(self.cfg, self.precision))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise EngineError(f"{self.path}: OpenVINO cannot compile it ({exc})") from None
        # a compiled port can carry several tensor names (the meta transformer's input: {'weights', 'view'})
        # and get_any_name() picks any of them: use the ONNX graph's own names, which every port still has
        import onnx

        graph = onnx.load(str(self.path), load_external_data=False).graph
        self.input_names = [_port_name(i, [v.name for v in graph.input]) for i in self.compiled.inputs]
        self.output_names = [_port_name(o, [v.name for v in graph.output]) for o in self.compiled.outputs]
        self.input_shapes = [[d.get_length() if d.is_static else None for d in i.get_partial_shape()]
                             for i in self.compiled.inputs]
        self._local = threading.local()

    def _check_meta(self) -> None:
        """Subclasses refuse files that are not theirs before compiling."""

    def _request(self, slot: str = "request"):
        """This thread's infer request; ``slot`` keeps the one whose tensors are bound to callers' buffers
        (:meth:`OvEngine.run`) apart from the one that allocates its own (a bound output tensor has a
        fixed shape, so the same request could not then run another size)."""
        request = getattr(self._local, slot, None)
        if request is None:
            request = self.compiled.create_infer_request()
            setattr(self._local, slot, request)
        return request

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self._request().infer({k: np.ascontiguousarray(v, np.float32) for k, v in feeds.items()},
                                        share_inputs=True)
        # copies: the request reuses its output memory on the next call
        return [np.array(results[o]) for o in self.compiled.outputs]


def _port_name(port, graph_names: list[str]) -> str:
    names = port.get_names()
    return next((n for n in graph_names if n in names), port.get_any_name())


class _SRMixin:
    """An srstyle-exported SR model (input ``lr`` [N,C,H,W] -> ``sr``), on either backend.

    :meth:`run` is safe to call from several threads; pass ``out`` (a C-contiguous float32 array of the
    output shape) to have the result written into it.
    """

    def _check_meta(self) -> None:
        if "scale" not in self.meta:
            raise EngineError(f"{self.path}: ONNX file has no 'scale' in metadata_props; export it with `srstyle` first")

    def _sr_init(self) -> None:
        self.scale = int(self.meta["scale"])
        self.color = self.meta.get("color", "y")
        self.receptive_radius = int(self.meta["receptive_radius"]) if "receptive_radius" in self.meta else None
        self.input_name, self.output_name = self.input_names[0], self.output_names[0]
        self.channels = 1 if self.color == "y" else 3

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        n, c, h, w = shape
        return (n, c, h * self.scale, w * self.scale)

    def _checked(self, x: np.ndarray, out: np.ndarray | None) -> tuple[np.ndarray, tuple]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise EngineError(f"{self.path.name}: expects [N,{self.channels},H,W] input, got shape {x.shape}")
        shape = self.output_shape(x.shape)
        if out is not None and (out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous):
            raise EngineError(f"output buffer must be C-contiguous float32 {shape}, got {out.dtype} {out.shape}")
        return x, shape

    def describe(self) -> dict:
        d = {"path": str(self.path), "scale": self.scale, "color": self.color, "backend": self.backend,
             "precision": self.precision, "threads": self.cfg.intra_op_threads,
             "optimization": self.cfg.graph_optimization, "io_binding": self.cfg.io_binding}
        if self.decision:
            d["auto"] = self.decision
        return d


class OrtEngine(_SRMixin, OnnxModel):
    """An SR model on onnxruntime; the output bound straight into ``out`` (IO binding)."""

    def __init__(self, path: Path | str, cfg: EngineConfig | None = None):
        OnnxModel.__init__(self, path, cfg)
        self._sr_init()
        self._local = threading.local()

    def run(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 [N,C,h,w] in [0,1] -> [N,C,h*s,w*s]; into ``out`` when given (IO binding)."""
        x, shape = self._checked(x, out)
        if out is None and not self.cfg.io_binding:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        binding = getattr(self._local, "binding", None)
        if binding is None:
            binding = self._local.binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, x)
        binding.bind_output(self.output_name, "cpu", 0, np.float32, list(shape), out.ctypes.data)
        try:
            self.session.run_with_iobinding(binding)
        finally:
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        return out


class OvEngine(_SRMixin, OvModel):
    """An SR model on OpenVINO; with ``io_binding`` the caller's buffer (or a fresh one) is the request's
    output tensor, so the result is written once, where it is wanted."""

    def __init__(self, path: Path | str, cfg: EngineConfig | None = None, precision: str | None = None):
        OvModel.__init__(self, path, cfg, precision)
        self._sr_init()

    def run(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        import openvino as ov

        x, shape = self._checked(x, out)
        if out is None and not self.cfg.io_binding:
            return np.array(self._request().infer({0: x}, share_inputs=True)[0])
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        request = self._request("bound")
        request.set_input_tensor(0, ov.Tensor(x, shared_memory=True))
        request.set_output_tensor(0, ov.Tensor(out, shared_memory=True))
        request.infer()
        return out


# --- opening a model: backend and precision resolved -------------------------------------------------------

def _build(path: Path, backend: str, precision: str, cfg: EngineConfig, sr: bool):
    file = variant_path(path, precision)
    if backend == "onnxruntime":
        return OrtEngine(file, cfg) if sr else OnnxModel(file, cfg)
    return OvEngine(file, cfg, precision) if sr else OvModel(file, cfg, precision)


def candidates(path: Path | str, cfg: EngineConfig, precision: str | None = None) -> tuple[list[tuple[str, str]], bool]:
    """The (backend, precision) pairs the settings allow for ``path``, and whether precision was left to ``auto``.

    A path that is itself ``<name>.int8.onnx`` asks for int8 unless a precision is given. onnxruntime has no
    bf16. OpenVINO's bf16 is offered to ``auto`` only where the CPU runs bf16 natively.
    """
    path = Path(path)
    wanted = precision or cfg.precision
    if wanted == "auto" and path.name.endswith(INT8_SUFFIX):
        wanted = "int8"
    backends = list(BACKENDS) if cfg.backend == "auto" else [cfg.backend]
    if "openvino" in backends and openvino_core() is None:
        if cfg.backend == "openvino":
            log.warning("engine.backend is openvino but OpenVINO is not installed (%s): running %s on onnxruntime",
                        OPENVINO_EXTRA, path.name)
        backends = ["onnxruntime"]
        if wanted == "bf16":
            log.warning("%s: bf16 needs OpenVINO; running fp32 on onnxruntime", path.name)
            wanted = "fp32"
    precisions = list(PRECISIONS) if wanted == "auto" else [wanted]
    int8_file = variant_path(path, "int8").is_file()
    pairs = []
    for backend in backends:
        for p in precisions:
            if p == "int8" and not int8_file:
                continue
            if p == "bf16" and (backend == "onnxruntime" or (wanted == "auto" and not openvino_has_bf16())):
                continue
            if p != "int8" and not variant_path(path, p).is_file():
                continue
            pairs.append((backend, p))
    return pairs, wanted == "auto"


def open_model(path: Path | str, cfg: EngineConfig | None = None, *, precision: str | None = None, sr: bool = False):
    """The engine for the exported model ``path`` (an :class:`OnnxModel`/:class:`OvModel`, or for ``sr`` an
    :class:`OrtEngine`/:class:`OvEngine`) in the backend and precision ``cfg`` asks for, ``precision``
    overriding ``cfg.precision``; ``auto`` settings are decided by measurement (:mod:`srstyle.engine_auto`)."""
    path = Path(path)
    cfg = cfg or EngineConfig()
    if not path.is_file():
        raise EngineError(f"{path}: ONNX file not found")
    pairs, precision_auto = candidates(path, cfg, precision)
    if not pairs:
        wanted = precision or cfg.precision
        if wanted == "int8" and not variant_path(path, "int8").is_file():
            raise EngineError(f"{variant_path(path, 'int8')}: no int8 variant of {path.name} "
                              "(export it with quantisation: export.int8.enabled)")
        raise EngineError(f"{path.name}: engine.backend {cfg.backend} cannot run precision {wanted} "
                          "(bf16 needs backend openvino or auto)")
    if len(pairs) == 1:
        return _build(path, *pairs[0], cfg, sr)
    from .engine_auto import choose_engine

    return choose_engine(path, pairs, cfg, sr=sr, precision_auto=precision_auto, build=_build)


def open_sr_engine(path: Path | str, cfg: EngineConfig | None = None, precision: str | None = None):
    return open_model(path, cfg, precision=precision, sr=True)
