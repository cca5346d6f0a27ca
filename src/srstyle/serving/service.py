"""BentoML service for the champion SR models.

    bentoml serve srstyle.serving.service:SRService --host 127.0.0.1 --port 3000

Two services: ``SRService`` (public HTTP API: decoding, limits, tiling, PNG encoding, clear 4xx errors) and
``SRRunner`` (holds the onnxruntime sessions; its ``infer`` endpoint is batchable, so BentoML's adaptive
batching groups tiles from concurrent requests into one model call). Importing this module never fails
for want of a model: the runner loads what it finds (``srstyle.serving.catalog``) and ``/readyz`` says
whether anything is being served.
"""

from __future__ import annotations

import io
import os
import tempfile
import typing as t
from pathlib import Path

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument, NotFound, ServiceUnavailable
from bentoml.validators import ContentType
from PIL import Image

from ..color import rgb_to_ycbcr, to_uint8, ycbcr_to_rgb
from ..config import ConfigError, ServingConfig, load_params
from ..io import ImageError, decode_oriented, open_image, to_rgb
from ..resize import bicubic_float
from ..tiling import place_tile, tile_boxes
from .catalog import load_catalog


def _settings() -> ServingConfig:
    path = Path(os.environ.get("SRSTYLE_PARAMS", "params.yaml"))
    if path.is_file():
        try:
            return load_params(path).serving
        except ConfigError:
            pass
    return ServingConfig()


SETTINGS = _settings()


def _engine_settings():
    """params.yaml's ``engine`` section (onnxruntime session options shared with the CLI), else defaults."""
    from ..config import EngineConfig

    path = Path(os.environ.get("SRSTYLE_PARAMS", "params.yaml"))
    if path.is_file():
        try:
            return load_params(path).engine
        except ConfigError:
            pass
    return EngineConfig()


ENGINE = _engine_settings()
# max_batch_size 1 turns adaptive batching off (each request's tiles then run as one call).
BATCHING = (dict(batchable=True, max_batch_size=SETTINGS.max_batch_size, max_latency_ms=SETTINGS.max_latency_ms)
            if SETTINGS.max_batch_size > 1 else {})


@bentoml.service(name="srstyle_runner", workers=1, traffic={"timeout": 300})
class SRRunner:
    def __init__(self) -> None:
        self.catalog = load_catalog(SETTINGS.threads, ENGINE)

    @bentoml.api(**BATCHING)
    def infer(self, items: list[dict[str, t.Any]]) -> list[np.ndarray]:
        """Each item {"model": name, "lr": float32 (1, C, h, w)}; same model and shape run as one batch."""
        outputs: list[np.ndarray | None] = [None] * len(items)
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault((item["model"], item["lr"].shape), []).append(i)
        for (name, _), idx in groups.items():
            batch = np.concatenate([items[i]["lr"] for i in idx], axis=0)
            result = self.catalog.models[name].model.run(batch)
            for j, i in enumerate(idx):
                outputs[i] = result[j : j + 1]
        return outputs  # type: ignore[return-value]

    @bentoml.api
    def describe(self) -> dict[str, t.Any]:
        return {"ready": self.catalog.ready, "models": {k: m.describe() for k, m in self.catalog.models.items()},
                "errors": self.catalog.errors}


def _decode(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size > SETTINGS.max_request_bytes:
        raise InvalidArgument(f"image is {size} bytes, over the {SETTINGS.max_request_bytes}-byte limit")
    try:
        with open_image(path, max_pixels=SETTINGS.max_pixels) as img:
            if img.format not in SETTINGS.allowed_formats:
                raise InvalidArgument(f"image format {img.format} is not accepted; send one of {SETTINGS.allowed_formats}")
            return np.asarray(to_rgb(decode_oriented(img, "image"), "image"))
    except ImageError as exc:
        raise InvalidArgument(str(exc).replace(str(path), "image")) from None


@bentoml.service(name="srstyle", workers=1, traffic={"timeout": 300, "max_concurrency": 64})
class SRService:
    runner = bentoml.depends(SRRunner)

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="srstyle-serve-"))
        self._catalog: dict[str, t.Any] | None = None
        self._catalog_time = 0.0

    async def _call(self, method: str, *args: t.Any) -> t.Any:
        """Call the runner; retry connection resets (the calls are idempotent) before giving up."""
        import asyncio

        import aiohttp

        for attempt in range(4):
            try:
                return await getattr(self.runner.to_async, method)(*args)
            except (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError, ConnectionError):
                if attempt == 3:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _describe(self) -> dict[str, t.Any]:
        import time

        # The catalog only changes when the runner restarts: ask it at most every 10 s.
        if self._catalog is None or not self._catalog["ready"] or time.monotonic() - self._catalog_time > 10:
            self._catalog, self._catalog_time = await self._call("describe"), time.monotonic()
        return self._catalog

    @bentoml.api(route="/healthz")
    def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @bentoml.api(route="/readyz")
    async def readyz(self, ctx: bentoml.Context) -> dict[str, t.Any]:
        info = await self._describe()
        if not info["ready"]:
            ctx.response.status_code = 503
            return {"ready": False, "error": "no model is loaded: register and promote one (dvc repro promote) "
                    "or set SRSTYLE_SERVE_DIR", "details": info["errors"]}
        return {"ready": True, "models": sorted(info["models"])}

    @bentoml.api(route="/models")
    async def models(self) -> dict[str, t.Any]:
        return await self._describe()

    @bentoml.api(route="/upscale")
    async def upscale(self, image: Path, scale: int = 3, model: str = "") -> t.Annotated[Path, ContentType("image/png")]:
        """Super-resolve ``image`` (Y by the model, CbCr by bicubic); returns a PNG ``scale`` times larger."""
        info = await self._describe()
        if not info["ready"]:
            raise ServiceUnavailable("no model is loaded: register and promote one (dvc repro promote)")
        catalog = info["models"]
        if model:
            if model not in catalog:
                raise NotFound(f"unknown model {model!r}; available: {sorted(catalog)}")
            if catalog[model]["scale"] != scale:
                raise InvalidArgument(f"model {model!r} is x{catalog[model]['scale']}, not x{scale}")
        else:
            matches = [k for k, m in catalog.items() if m["scale"] == scale]
            if not matches:
                raise NotFound(f"no model for scale {scale}; available scales: {sorted({m['scale'] for m in catalog.values()})}")
            model = next((k for k in matches if k.startswith("sr-x")), matches[0])
        rgb = _decode(image)
        entry = catalog[model]
        rgb_model = entry.get("color", "y") == "rgb"
        ycbcr = rgb_to_ycbcr(rgb)
        x = (rgb.astype(np.float32).transpose(2, 0, 1)[None] / 255.0) if rgb_model else \
            (ycbcr[..., 0].astype(np.float32) / 255.0)[None, None]
        h, w = x.shape[2:]
        overlap = entry.get("receptive_radius") or 16
        boxes = tile_boxes(h, w, SETTINGS.tile or max(h, w), overlap)
        items = [{"model": model, "lr": np.ascontiguousarray(x[:, :, p[0]:p[1], p[2]:p[3]])} for _, p in boxes]
        results = await self._call("infer", items)
        out = np.empty((1, x.shape[1], h * scale, w * scale), dtype=np.float32)
        for (kept, padded), result in zip(boxes, results):
            place_tile(out, result, kept, padded, scale)
        if rgb_model:
            sr = to_uint8(out[0].transpose(1, 2, 0), 255.0)
        else:
            size = (h * scale, w * scale)
            full = np.stack([out[0, 0] * 255.0, bicubic_float(ycbcr[..., 1], size), bicubic_float(ycbcr[..., 2], size)], -1)
            sr = to_uint8(ycbcr_to_rgb(full), 255.0)
        target = Path(tempfile.mkstemp(suffix=".png", dir=self.tmp)[1])
        buf = io.BytesIO()
        Image.fromarray(sr).save(buf, format="PNG")
        target.write_bytes(buf.getvalue())
        return target
