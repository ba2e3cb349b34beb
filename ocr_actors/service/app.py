"""Ray Serve deployment: ``POST /ocr`` and ``GET /health`` over the engine's runners.

Concurrent requests are gathered by ``serve.batch`` and run through the engine together: the
pages of requests with the same switches share detection calls and, above all, recognition
batches (crops of several requests sorted by aspect ratio together).
"""

import asyncio
import json
import logging
from functools import partial
from typing import Any

# FastAPI resolves the handlers' annotations at import time: these must be module globals.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ocr_actors.service.config import ServiceConfig
from ocr_actors.service.protocol import (
    ApiError,
    OcrRequest,
    failure,
    jpeg_base64,
    new_log_id,
    parse_request,
    pruned_result,
    success,
)

log = logging.getLogger("ocr_batch.service")


def build_app(config: ServiceConfig):  # type: ignore[no-untyped-def]
    """The Serve application (bind it with ``serve.run``)."""
    from ray import serve

    api = FastAPI(title="ocr-batch", docs_url=None, redoc_url=None)

    @serve.deployment(num_replicas=config.num_replicas, max_ongoing_requests=64)
    @serve.ingress(api)
    class OCRService:
        def __init__(self, service_config: ServiceConfig) -> None:
            from ocr_actors.runtime.ocr import OCREngine

            self.config = service_config
            self.engine = OCREngine(service_config.ocr)
            self._run_batch.set_max_batch_size(service_config.max_batch_size)  # type: ignore[attr-defined]
            self._run_batch.set_batch_wait_timeout_s(service_config.batch_wait_timeout_s)  # type: ignore[attr-defined]

        @api.get("/health")
        async def health(self) -> dict[str, str]:
            return {"status": "ok"}

        @api.post("/ocr")
        async def ocr(self, request: Request) -> JSONResponse:
            log_id = new_log_id()
            try:
                body = await request.body()
                if len(body) > self.config.max_body_bytes * 4 // 3 + 4096:
                    raise ApiError(413, f"request body larger than the limit of {self.config.max_body_bytes} bytes")
                try:
                    payload = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ApiError(400, "the request body is not valid JSON") from exc
                parsed = await asyncio.get_running_loop().run_in_executor(
                    None, partial(parse_request, payload, self.config, self._fetcher())
                )
                try:
                    params = self.engine.params(**parsed.switches)
                except ValueError as exc:
                    raise ApiError(422, str(exc)) from exc
                results = await self._run_batch((parsed, params))
                return JSONResponse(success(log_id, results, parsed.data_info))
            except ApiError as exc:
                return JSONResponse(failure(log_id, exc.status, exc.message), status_code=exc.status)
            except Exception:  # no stack traces in responses; the log has them
                log.exception("request %s failed", log_id)
                return JSONResponse(failure(log_id, 500, "internal error"), status_code=500)

        def _fetcher(self):  # type: ignore[no-untyped-def]
            if not self.config.allow_url_inputs:
                return None
            from ocr_actors.service.fetch import fetch_url

            cfg = self.config
            return partial(
                fetch_url, allowlist=cfg.url_allowlist, max_bytes=cfg.max_body_bytes, timeout_s=cfg.url_timeout_s
            )

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
        async def _run_batch(self, items: list[tuple[OcrRequest, Any]]) -> list[list[dict[str, Any]]]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self._ocr_requests, items)

        def _ocr_requests(self, items: list[tuple[OcrRequest, Any]]) -> list[list[dict[str, Any]]]:
            """OCR every page of every request; requests with equal switches run together."""
            from ocr_actors.result import OCRResult

            outputs: list[list[dict[str, Any]]] = [[] for _ in items]
            groups: dict[Any, list[int]] = {}
            for index, (_, params) in enumerate(items):
                groups.setdefault(params, []).append(index)
            for params, members in groups.items():
                pages = [page for i in members for page in items[i][0].pages]
                ocr = self.engine.ocr_pages(pages, params)
                cursor = 0
                for i in members:
                    request = items[i][0]
                    for page_no, image in enumerate(request.pages):
                        result = OCRResult(ocr[cursor], None, page_no if request.file_type == 0 else None, image)
                        cursor += 1
                        outputs[i].append(
                            {
                                "prunedResult": pruned_result(result.json),
                                "ocrImage": jpeg_base64(result.img["ocr_res_img"]) if request.visualize else None,
                            }
                        )
            return outputs

    return OCRService.bind(config)  # type: ignore[attr-defined]


def serve_forever(config: ServiceConfig) -> None:
    """Start Ray (in-process), Serve's HTTP proxy on ``host:port``, and the app; block."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=True, configure_logging=False)
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(build_app(config), name="ocr", route_prefix="/", blocking=True)
