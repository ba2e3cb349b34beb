"""Ray Serve deployment: ``POST /ocr`` and ``GET /health`` over the engine's runners.

Concurrent requests are gathered by ``serve.batch``. By default each then runs alone, so its
answer never depends on the others; with ``batch_across_requests`` the pages of requests with
the same switches share detection calls and recognition batches (crops of several requests
sorted by aspect ratio together).
"""

import asyncio
import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

# FastAPI resolves the handlers' annotations at import time: these must be module globals.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocr_actors.redaction import redacting_logger
from ocr_actors.service.config import ServiceConfig
from ocr_actors.service.protocol import (
    ApiError,
    OcrRequest,
    failure,
    jpeg_base64,
    new_log_id,
    parse_request,
    pruned_result,
    request_names,
    success,
)

log = redacting_logger("ocr_batch.service")


def build_app(config: ServiceConfig):  # type: ignore[no-untyped-def]
    """The Serve application (bind it with ``serve.run``)."""
    from ray import serve

    # No redirects from "/ocr/" to "/ocr": other paths are 404s in the envelope, and a redirect
    # would be built from the client's own Host header.
    api = FastAPI(title="ocr-batch", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown paths (404) and methods (405) answer in the same envelope as every error."""
        return JSONResponse(failure(new_log_id(), exc.status_code, str(exc.detail)), status_code=exc.status_code)

    @serve.deployment(num_replicas=config.num_replicas, max_ongoing_requests=config.max_ongoing_requests)
    @serve.ingress(api)
    class OCRService:
        def __init__(self, service_config: ServiceConfig) -> None:
            from ocr_actors.runtime.ocr import OCREngine, apply_switches

            self.config = service_config
            self.engine = OCREngine(service_config.ocr)
            self._apply_switches = apply_switches
            # Threads of their own: reading requests (URL downloads that may take url_timeout_s)
            # one per request in flight, so none waits for another's download, and the engine's
            # one, so OCR never waits behind downloads (the loop's default pool is shared).
            self._parse_pool = ThreadPoolExecutor(service_config.max_ongoing_requests, "ocr-request")
            self._ocr_pool = ThreadPoolExecutor(1, "ocr-engine")
            self._run_batch.set_max_batch_size(service_config.max_batch_size)  # type: ignore[attr-defined]
            self._run_batch.set_batch_wait_timeout_s(service_config.batch_wait_timeout_s)  # type: ignore[attr-defined]

        def __del__(self) -> None:
            """Serve calls this when it stops the replica: its thread pools let their threads go."""
            for pool in (getattr(self, "_parse_pool", None), getattr(self, "_ocr_pool", None)):
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)

        @api.get("/health")
        async def health(self) -> dict[str, Any]:
            return {"logId": new_log_id(), "errorCode": 0, "errorMsg": "Healthy"}

        @api.post("/ocr")
        async def ocr(self, request: Request) -> JSONResponse:
            log_id = new_log_id()
            try:
                body = await self._read_body(request)
                try:
                    payload = json.loads(body)
                except (ValueError, RecursionError) as exc:  # also nesting too deep, an integer of 4300+ digits
                    raise ApiError(400, "the request body is not valid JSON") from exc
                parsed = await asyncio.get_running_loop().run_in_executor(
                    self._parse_pool, partial(parse_request, payload, self.config, self._fetcher())
                )
                try:
                    params = self._apply_switches(self.engine.default_params(), **parsed.switches)
                except ValueError as exc:
                    raise ApiError(422, request_names(str(exc))) from exc
                results = await self._run_batch((parsed, params))
                if isinstance(results, Exception):  # this request's own failure; its batch went on
                    raise results
                return JSONResponse(success(log_id, results, parsed.data_info))
            except ApiError as exc:
                return JSONResponse(failure(log_id, exc.status, exc.message), status_code=exc.status)
            except Exception:  # no stack traces in responses; the log has them
                log.exception("request %s failed", log_id)
                return JSONResponse(failure(log_id, 500, "internal error"), status_code=500)

        async def _read_body(self, request: Request) -> bytes:
            """The body, refused (413) as soon as it passes the limit: a base64 file of
            ``max_body_bytes`` plus the other fields. A declared length is checked first. A
            body that stops arriving for ``body_timeout_s`` (no byte in that long) is a 408: a
            client that stalls mid-upload holds one of ``max_ongoing_requests`` for that long
            at most, while a slow but steady upload goes on."""
            limit = self.config.max_body_bytes * 4 // 3 + 4096
            message = (
                f"request body above the limit of {limit} bytes "
                f"(a file of at most {self.config.max_body_bytes} bytes, base64-encoded)"
            )
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ApiError(413, message)
            chunks, size = [], 0
            idle = self.config.body_timeout_s
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(idle) as deadline:  # an idle limit: each chunk moves it on
                    async for chunk in request.stream():
                        deadline.reschedule(loop.time() + idle)
                        size += len(chunk)
                        if size > limit:
                            raise ApiError(413, message)
                        chunks.append(chunk)
            except TimeoutError as exc:
                raise ApiError(408, f"the request body stopped arriving for {idle:g} s (body_timeout_s)") from exc
            return b"".join(chunks)

        def _fetcher(self):  # type: ignore[no-untyped-def]
            if not self.config.allow_url_inputs:
                return None
            from ocr_actors.service.fetch import fetch_url

            cfg = self.config
            return partial(
                fetch_url, allowlist=cfg.url_allowlist, max_bytes=cfg.max_body_bytes, timeout_s=cfg.url_timeout_s
            )

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
        async def _run_batch(self, items: list[tuple[OcrRequest, Any]]) -> list[list[dict[str, Any]] | Exception]:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._ocr_pool, self._ocr_requests, items)

        def _ocr_requests(self, items: list[tuple[OcrRequest, Any]]) -> list[list[dict[str, Any]] | Exception]:
            """OCR every page of every request: each alone, or (``batch_across_requests``)
            requests with equal switches together. A request that fails gets its exception in
            its place, and the others of its batch their answers: a group that fails together
            is run again one request at a time."""
            outputs: list[list[dict[str, Any]] | Exception] = [[] for _ in items]
            groups: dict[Any, list[int]] = {}
            for index, (_, params) in enumerate(items):
                groups.setdefault(params if self.config.batch_across_requests else index, []).append(index)
            for members in groups.values():
                answers: list[list[dict[str, Any]] | Exception]
                try:
                    answers = list(self._ocr_group([items[i][0] for i in members], items[members[0]][1]))
                except Exception as exc:
                    if len(members) == 1:
                        outputs[members[0]] = exc
                        continue
                    answers = []
                    for i in members:
                        try:
                            answers.extend(self._ocr_group([items[i][0]], items[i][1]))
                        except Exception as alone:
                            answers.append(alone)
                for i, answer in zip(members, answers, strict=True):
                    outputs[i] = answer
            return outputs

        def _ocr_group(self, requests: list[OcrRequest], params: Any) -> list[list[dict[str, Any]]]:
            """The answers of requests with the same switches, their pages run together."""
            from ocr_actors.result import OCRResult

            ocr = self.engine.ocr_pages([page for request in requests for page in request.pages], params)
            answers: list[list[dict[str, Any]]] = []
            cursor = 0
            for request in requests:
                answer = []
                several = request.file_type == 0 or len(request.pages) > 1  # a PDF, a multi-frame TIFF
                for page_no, image in enumerate(request.pages):
                    result = OCRResult(ocr[cursor], None, page_no if several else None, image)
                    cursor += 1
                    answer.append(ocr_result_item(result, image, request.visualize))
                answers.append(answer)
            return answers

    return OCRService.bind(config)  # type: ignore[attr-defined]


def ocr_result_item(result: Any, image: Any, visualize: bool) -> dict[str, Any]:
    """One entry of ``ocrResults``: ``prunedResult``; with ``visualize`` also ``ocrImage``,
    ``inputImage`` and, when document preprocessing ran, ``docPreprocessingImage`` (base64
    JPEG). Images not sent are left out, as the reference leaves out null fields."""
    item: dict[str, Any] = {"prunedResult": pruned_result(result.json)}
    if visualize:
        images = result.img
        item["ocrImage"] = jpeg_base64(images["ocr_res_img"])
        if "preprocessed_img" in images:
            item["docPreprocessingImage"] = jpeg_base64(images["preprocessed_img"])
        item["inputImage"] = jpeg_base64(image)
    return item


def serve_forever(config: ServiceConfig) -> None:
    """Start Ray (in-process), Serve's HTTP proxy on ``host:port``, and the app; block until
    Ctrl-C or SIGTERM, then shut Serve and Ray down and return."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=True, configure_logging=False)
    if threading.current_thread() is threading.main_thread():  # after ray.init, which sets its own
        signal.signal(signal.SIGTERM, _stop_serving)
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(build_app(config), name="ocr", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        log.info("stopping the service")
    finally:
        if threading.current_thread() is threading.main_thread():  # a second signal waits for the shutdown
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            serve.shutdown()
            ray.shutdown()
        except Exception:  # never hide why the service stopped behind a failed clean-up
            log.exception("shutting the service down failed")


def _stop_serving(signum: int, frame: object) -> None:
    """SIGTERM stops the service as Ctrl-C does (Ray's own handler would exit at once)."""
    raise KeyboardInterrupt
