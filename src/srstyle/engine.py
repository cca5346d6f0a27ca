"""The one inference engine for exported SR models: onnxruntime sessions configured from ``params.yaml``.

Every consumer (the prediction core :mod:`srstyle.predict`, and through it ``srstyle upscale|stylize`` on
images and video, the int8 evaluation in the export stage, the BentoML service) runs an ``.onnx`` file
through :class:`OnnxModel` (:class:`OrtEngine` for SR models); PyTorch is only the CLI's fallback for a
trainer ``model.pt`` that has not been exported (see :mod:`srstyle.inference`).

What matters on a small CPU, all set from ``engine:`` in params.yaml:

* ``intra_op_threads``: the threads one convolution is split over (0 = one per physical core);
* ``graph_optimization: all``: constant folding, Conv+activation fusion and, at ``all``, the NCHWc layout
  transform that lets MLAS run the 3x3/5x5 convolutions near the machine's matmul rate;
* ``allow_spinning``: idle ORT threads spin waiting for work; on a machine where decode and encode threads
  share the cores with inference (the video path), spinning steals their time, so it can be turned off;
* ``io_binding``: the output is written straight into a caller-owned preallocated buffer instead of an
  array ORT allocates and Python then wraps.

Each exported model exists in two precisions: ``<name>.onnx`` (fp32) and ``<name>.int8.onnx`` (static QDQ
quantisation, :mod:`srstyle.export.quantize`); :func:`variant_path` maps one to the other.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .config import EngineConfig

INT8_SUFFIX = ".int8.onnx"

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


class EngineError(ValueError):
    """An ONNX file the engine cannot serve; the message names the file and what to do."""


def variant_path(path: Path | str, precision: str) -> Path:
    """The file of ``precision`` ("fp32" or "int8") that belongs to the exported model ``path``."""
    path = Path(path)
    name = path.name
    base = name[: -len(INT8_SUFFIX)] if name.endswith(INT8_SUFFIX) else path.stem
    if precision == "int8":
        return path.with_name(base + INT8_SUFFIX)
    if precision == "fp32":
        return path.with_name(base + ".onnx")
    raise EngineError(f"unknown precision {precision!r}; expected 'fp32' or 'int8'")


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


class OnnxModel:
    """One onnxruntime session over an srstyle-exported ONNX graph (SR or style), with its metadata.

    Loading reads ``metadata_props`` first (cheap) so a wrong or corrupt file fails with a clear message.
    """

    def __init__(self, path: Path | str, cfg: EngineConfig | None = None):
        import onnx
        import onnxruntime as ort

        self.path = Path(path)
        self.cfg = cfg or EngineConfig()
        if not self.path.is_file():
            raise EngineError(f"{self.path}: ONNX file not found")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a bad file
            raise EngineError(f"{self.path}: not a readable ONNX file ({exc})") from None
        self.meta = {p.key: p.value for p in proto.metadata_props}
        self._check_meta()
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(self.cfg),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise EngineError(f"{self.path}: onnxruntime cannot load it ({exc})") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _check_meta(self) -> None:
        """Subclasses refuse files that are not theirs before a session is built."""

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The plain session call (thread-safe in onnxruntime)."""
        return self.session.run(self.output_names, feeds)


class OrtEngine(OnnxModel):
    """An srstyle-exported SR model (input ``lr`` [N,C,H,W] -> ``sr``).

    :meth:`run` is safe to call from several threads (each call binds its own IO); pass ``out`` (a
    C-contiguous float32 array of the output shape) to have the result written into it.
    """

    def _check_meta(self) -> None:
        if "scale" not in self.meta:
            raise EngineError(f"{self.path}: ONNX file has no 'scale' in metadata_props; export it with `srstyle` first")

    def __init__(self, path: Path | str, cfg: EngineConfig | None = None):
        super().__init__(path, cfg)
        self.scale = int(self.meta["scale"])
        self.color = self.meta.get("color", "y")
        self.precision = self.meta.get("precision", "int8" if self.path.name.endswith(INT8_SUFFIX) else "fp32")
        self.receptive_radius = int(self.meta["receptive_radius"]) if "receptive_radius" in self.meta else None
        self.input_name, self.output_name = self.input_names[0], self.output_names[0]
        self.channels = 1 if self.color == "y" else 3
        self._local = threading.local()

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        n, c, h, w = shape
        return (n, c, h * self.scale, w * self.scale)

    def run(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 [N,C,h,w] in [0,1] -> [N,C,h*s,w*s]; into ``out`` when given (IO binding)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise EngineError(f"{self.path.name}: expects [N,{self.channels},H,W] input, got shape {x.shape}")
        if out is None and not self.cfg.io_binding:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        shape = self.output_shape(x.shape)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise EngineError(f"output buffer must be C-contiguous float32 {shape}, got {out.dtype} {out.shape}")
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

    def describe(self) -> dict:
        return {"path": str(self.path), "scale": self.scale, "color": self.color, "precision": self.precision,
                "threads": self.cfg.intra_op_threads, "optimization": self.cfg.graph_optimization,
                "io_binding": self.cfg.io_binding}
