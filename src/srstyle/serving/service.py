"""BentoML service for srstyle's champion models: super-resolution and style transfer.

    bentoml serve srstyle.serving.service:SRStyle --host 127.0.0.1 --port 3000

One service, ``serving.workers`` processes (2: both cores decode, run models and encode). Each worker
loads the catalog (:mod:`.catalog`) in a background thread, so ``GET /readyz`` (BentoML's own probe, via
``__is_ready__``) answers 503 until a model is loaded and 200 after, while ``/healthz`` and ``GET /livez``
answer from the start. The APIs are sync: BentoML runs them in a thread pool, off the event loop; decode,
colour, PIL encode and onnxruntime release the GIL, and every model call goes through the worker's
:class:`.batcher.Batcher` (adaptive batching across requests, ``serving.max_batch_size`` /
``serving.max_latency_ms``). Replies are bytes (no temp files). A client's mistake is a 4xx JSON
``{"error": ...}`` naming the field, logged as one INFO line, never an ERROR traceback.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import typing as t
from collections import OrderedDict
from pathlib import Path

import bentoml
import numpy as np
from bentoml.validators import ContentType
from starlette.responses import JSONResponse, Response

from ..predict import ImageError, ModelLoadError, decode_image, encode_image
from ..predict.style import _finish as style_finish, to_nchw  # the fast/meta nets split so runs can batch
from .batcher import Batcher
from .catalog import Catalog, load_catalog
from .demo import DESCRIPTION, demo_app
from .logfilter import install as install_log_filter
from .settings import load_settings, serving_engine

log = logging.getLogger("srstyle.serving")
SETTINGS, ENGINE = load_settings()
MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
install_log_filter()


class ClientError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _Service(bentoml.Service):
    """srstyle's own description on the front page and in the OpenAPI document (not BentoML's template)."""

    @property
    def doc(self) -> str:
        return DESCRIPTION


def _error(exc: Exception, status: int, route: str) -> JSONResponse:
    log.info("%s: %d %s", route, status, exc)
    return JSONResponse({"error": str(exc)}, status_code=status)


def _read(path: Path | None, field: str) -> bytes:
    if path is None:
        raise ClientError(f"{field}: missing; send the image as a multipart file field named {field!r}")
    size = Path(path).stat().st_size
    if size > SETTINGS.max_request_bytes:
        raise ClientError(f"{field}: {size} bytes, over the {SETTINGS.max_request_bytes}-byte limit", 413)
    return Path(path).read_bytes()


def _decode(path: Path | None, field: str) -> np.ndarray:
    data = _read(path, field)
    try:
        return decode_image(data, allowed_formats=tuple(SETTINGS.allowed_formats), max_pixels=SETTINGS.max_pixels,
                            max_bytes=SETTINGS.max_request_bytes, name=field)
    except ImageError as exc:
        raise ClientError(str(exc)) from None


def _output_format(fmt: str, quality: int) -> str:
    key = (fmt or "png").lower()
    if key not in MEDIA:
        raise ClientError(f"format: {fmt!r} is not offered; choose png, jpeg or webp")
    if not 1 <= quality <= 100:
        raise ClientError(f"quality: {quality} is out of range; give 1-100 (JPEG/WebP)")
    return "jpeg" if key == "jpg" else key


def _fit_style_input(rgb: np.ndarray) -> np.ndarray:
    """Style nets see the whole image (instance norm: no tiling), so large photos are scaled down first."""
    h, w = rgb.shape[:2]
    side = SETTINGS.style_max_side
    if max(h, w) <= side:
        return rgb
    from PIL import Image

    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


@bentoml.service(name="srstyle", service_class=_Service, workers=SETTINGS.workers, threads=max(4, SETTINGS.max_batch_size),
                 traffic={"timeout": 300, "max_concurrency": 128})
class SRStyle:
    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.load_error: str | None = None
        self.batcher = Batcher(SETTINGS.max_batch_size, SETTINGS.max_latency_ms)
        self._weights: OrderedDict[str, np.ndarray] = OrderedDict()  # painting sha256 -> meta weights
        self._weights_lock = threading.Lock()
        threading.Thread(target=self._load, name="srstyle-load", daemon=True).start()

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            self.catalog = load_catalog(serving_engine(SETTINGS, ENGINE))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and /models, the process stays up
            log.exception("loading the models failed")
            self.load_error, self.catalog = f"{type(exc).__name__}: {exc}", Catalog(errors=[str(exc)])
        log.info("models loaded in %.1f s", time.perf_counter() - t0)

    def __is_ready__(self) -> bool:
        return self.catalog is not None and self.catalog.ready

    def _models(self) -> Catalog:
        if self.catalog is None:
            raise ClientError("models are still loading; retry shortly (GET /readyz says when)", 503)
        if not self.catalog.ready:
            raise ClientError("no model is loaded: register and promote one (dvc repro), or set SRSTYLE_SERVE_DIR; "
                              f"details: {self.catalog.errors}", 503)
        return self.catalog

    def _reply(self, rgb: np.ndarray, fmt: str, quality: int, extra: dict | None = None) -> Response:
        data = encode_image(rgb, fmt, quality=quality, png_level=SETTINGS.png_level)
        headers = {"X-Srstyle-Size": f"{rgb.shape[1]}x{rgb.shape[0]}", **(extra or {})}
        return Response(content=data, media_type=MEDIA[fmt], headers=headers)

    # -- liveness / catalog ------------------------------------------------------------------------------
    @bentoml.api(route="/healthz")
    async def healthz(self) -> dict[str, str]:
        """Liveness: answers as soon as the process runs (on the event loop, never behind busy threads)."""
        return {"status": "ok"}

    @bentoml.api(route="/models")
    async def models(self) -> dict[str, t.Any]:
        """The served models: SR models by name with their scale, style names, the meta network, and the
        errors of any model that did not load."""
        if self.catalog is None:
            return {"ready": False, "loading": True, "models": {}, "styles": [], "scales": [], "errors": []}
        info = self.catalog.describe()
        info["batching"] = {"max_batch_size": self.batcher.max_batch_size,
                            "max_latency_ms": SETTINGS.max_latency_ms, "model_calls": self.batcher.calls,
                            "inputs": self.batcher.inputs}
        return info

    # -- super-resolution ---------------------------------------------------------------------------------
    @bentoml.api(route="/upscale")
    def upscale(self, image: Path, scale: int = 3, model: str = "", format: str = "png",
                quality: int = 90) -> t.Annotated[Path, ContentType("image/*")]:
        """Super-resolve ``image`` ``scale`` times (an SR model of that scale; ``model`` names one, see
        /models). ``format`` png (default), jpeg or webp; ``quality`` 1-100 for jpeg/webp."""
        try:
            fmt = _output_format(format, quality)
            with self.batcher.expecting() as ticket:
                catalog = self._models()
                if model:
                    entry = catalog.of_kind("sr").get(model)
                    if entry is None:
                        raise ClientError(f"model: unknown SR model {model!r}; available: {sorted(catalog.of_kind('sr'))}", 404)
                    if entry.scale != scale:
                        raise ClientError(f"scale: model {model!r} is x{entry.scale}, not x{scale}; "
                                          f"send scale={entry.scale} or leave model empty")
                else:
                    entry = catalog.default_sr(scale)
                    if entry is None:
                        scales = sorted({m.scale for m in catalog.of_kind("sr").values()})
                        raise ClientError(f"scale: no model for scale {scale}; available scales: {scales}", 404)
                rgb = _decode(image, "image")
                sr = entry.predictor
                try:
                    plan = sr.prepare(rgb, tile=SETTINGS.tile, max_output_pixels=SETTINGS.max_pixels * 16)
                except ImageError as exc:
                    raise ClientError(str(exc), 413) from None
                step = max(1, self.batcher.max_batch_size)
                # tiles go to the batcher a few at a time, so only that many tiles' floats are alive at once
                for start in range(0, len(plan), step):
                    idx = range(start, min(start + step, len(plan)))
                    outs = ticket.run_many(entry.name, sr.run, [sr.tile_input(plan, i) for i in idx])
                    for i, out in zip(idx, outs):
                        sr.place(plan, i, out)
            return self._reply(plan.out, fmt, quality, {"X-Srstyle-Model": entry.name})
        except ClientError as exc:
            return _error(exc, exc.status, "/upscale")

    # -- style transfer ------------------------------------------------------------------------------------
    @bentoml.api(route="/stylize")
    def stylize(self, image: Path, style: str = "", format: str = "png", quality: int = 90,
                preserve_color: bool = False) -> t.Annotated[Path, ContentType("image/*")]:
        """``image`` in a trained ``style`` (its name; /models lists them). Images longer than
        serving.style_max_side are scaled down first. ``preserve_color`` keeps the photo's colours."""
        try:
            fmt = _output_format(format, quality)
            with self.batcher.expecting() as ticket:
                styles = self._models().of_kind("style")
                if not styles:
                    raise ClientError("style: no style model is served (promote_style registers them)", 404)
                if style not in styles:
                    raise ClientError(f"style: unknown style {style!r}; available: {sorted(styles)}", 404)
                rgb = _fit_style_input(_decode(image, "image"))
                p = styles[style].predictor

                out = ticket.run_many(f"style:{style}", p.run, [to_nchw(rgb)])[0]
            return self._reply(style_finish(out[0], rgb, preserve_color), fmt, quality, {"X-Srstyle-Model": f"style:{style}"})
        except ClientError as exc:
            return _error(exc, exc.status, "/stylize")

    @bentoml.api(route="/stylize_arbitrary")
    def stylize_arbitrary(self, image: Path, painting: Path, format: str = "png",
                          quality: int = 90, preserve_color: bool = False) -> t.Annotated[Path, ContentType("image/*")]:
        """``image`` in the style of any ``painting`` (the meta network: painting -> transformer weights,
        cached per painting)."""
        try:
            fmt = _output_format(format, quality)
            with self.batcher.expecting() as ticket:
                metas = self._models().of_kind("meta")
                if not metas:
                    raise ClientError("painting: no meta network is served (promote_style registers style-meta)", 404)
                meta = next(iter(metas.values())).predictor
                paint_bytes = _read(painting, "painting")
                digest = hashlib.sha256(paint_bytes).hexdigest()
                weights = self._cached_weights(digest)
                if weights is None:
                    try:
                        paint = decode_image(paint_bytes, allowed_formats=tuple(SETTINGS.allowed_formats),
                                             max_pixels=SETTINGS.max_pixels, name="painting")
                    except ImageError as exc:
                        raise ClientError(str(exc)) from None
                    weights = meta.weights(paint)
                    self._store_weights(digest, weights)
                rgb = _fit_style_input(_decode(image, "image"))

                out = ticket.run_many(f"meta:{digest}", lambda x: meta.transform(x, weights), [to_nchw(rgb)])[0]
            return self._reply(style_finish(out[0], rgb, preserve_color), fmt, quality, {"X-Srstyle-Model": "meta"})
        except ClientError as exc:
            return _error(exc, exc.status, "/stylize_arbitrary")

    def _cached_weights(self, digest: str) -> np.ndarray | None:
        with self._weights_lock:
            w = self._weights.get(digest)
            if w is not None:
                self._weights.move_to_end(digest)
            return w

    def _store_weights(self, digest: str, weights: np.ndarray) -> None:
        with self._weights_lock:
            self._weights[digest] = weights
            while len(self._weights) > 32:
                self._weights.popitem(last=False)


SRStyle = bentoml.asgi_app(demo_app(), path="/demo", name="demo")(SRStyle)
SRService = SRStyle  # the name `make serve` and older docs use
__all__ = ["SRStyle", "SRService", "ModelLoadError"]
