"""Typed configuration of the HTTP service."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocr_actors.config import OCRConfig, _check


@dataclass(frozen=True)
class ServiceConfig:
    """``ocr-batch serve``.

    Attributes:
        max_body_bytes: requests above this size are refused (413).
        max_pdf_pages: PDFs (and multi-frame TIFFs) are read up to this many pages (the
            reference's default is 10).
        allow_url_inputs: accept ``file`` as an http(s) URL (off by default).
        url_allowlist: host names URL inputs may come from (exact, or ``.example.com`` for
            subdomains); loopback, private, link-local and reserved addresses are refused
            whatever the list says.
        body_timeout_s: the longest a request's body may stop arriving (no byte in that
            long); 408 past it (a client that stalls mid-upload would otherwise hold one of
            ``max_ongoing_requests`` for as long as it keeps its connection open). A slow but
            steady upload is never cut.
        url_timeout_s: the most a URL input's download may take, name lookup included (and
            each socket operation in it); 422 past it.
        max_batch_size / batch_wait_timeout_s: concurrent requests are gathered into one
            model call of up to this many requests.
        batch_across_requests: gathered requests with the same switches share detection
            calls and recognition batches (more throughput, on GPUs above all). Off by
            default: a recognition batch is padded to its widest line, so a request's texts
            and scores would then depend a little on the other requests of its batch; off, a
            request always gets the answer it gets alone.
        visualize: the default of a request's ``visualize`` (annotated, input and
            preprocessed images as base64 JPEG): on, as in the reference.
        max_request_pixels: the most pixels a request's decoded pages may hold together (and
            any one page, with ``ocr.input.max_pixels``): a PDF of a few hundred bytes can
            describe pages of 9000 x 9000 pixels, so without a budget ten such pages would hold
            gigabytes. 413 above it. The default, 100 M, is about 300 MB of decoded pages.
        max_ongoing_requests: requests a replica takes at once (Ray Serve queues the rest);
            with ``max_request_pixels`` it bounds a replica's memory for decoded pages.
    """

    ocr: OCRConfig = field(default_factory=OCRConfig)
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 << 20
    max_pdf_pages: int = 10
    allow_url_inputs: bool = False
    url_allowlist: tuple[str, ...] = ()
    url_timeout_s: float = 20.0
    body_timeout_s: float = 30.0
    num_replicas: int = 1
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.02
    batch_across_requests: bool = False
    visualize: bool = True
    max_request_pixels: int = 100_000_000
    max_ongoing_requests: int = 16

    def __post_init__(self) -> None:
        _check(self.max_request_pixels >= 1, "max_request_pixels", self.max_request_pixels)
        _check(self.body_timeout_s > 0, "body_timeout_s", self.body_timeout_s)
        _check(self.max_ongoing_requests >= 1, "max_ongoing_requests", self.max_ongoing_requests)
        _check(1 <= self.port <= 65535, "port", self.port)
        _check(self.max_pdf_pages >= 1, "max_pdf_pages", self.max_pdf_pages)
        _check(self.max_batch_size >= 1, "max_batch_size", self.max_batch_size)
