"""Typed configuration of the HTTP service."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocr_actors.config import OCRConfig, _check


@dataclass(frozen=True)
class ServiceConfig:
    """``ocr-batch serve``.

    Attributes:
        max_body_bytes: requests above this size are refused (413).
        max_pdf_pages: PDFs are read up to this many pages (the reference's default is 10).
        allow_url_inputs: accept ``file`` as an http(s) URL (off by default).
        url_allowlist: host names URL inputs may come from (exact, or ``.example.com`` for
            subdomains); loopback, private, link-local and reserved addresses are refused
            whatever the list says.
        max_batch_size / batch_wait_timeout_s: concurrent requests are gathered into one
            model call of up to this many requests.
        batch_across_requests: gathered requests with the same switches share detection
            calls and recognition batches (more throughput, on GPUs above all). Off by
            default: a recognition batch is padded to its widest line, so a request's texts
            and scores would then depend a little on the other requests of its batch; off, a
            request always gets the answer it gets alone.
        visualize: the default of a request's ``visualize`` (annotated, input and
            preprocessed images as base64 JPEG): on, as in the reference.
    """

    ocr: OCRConfig = field(default_factory=OCRConfig)
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 << 20
    max_pdf_pages: int = 10
    allow_url_inputs: bool = False
    url_allowlist: tuple[str, ...] = ()
    url_timeout_s: float = 20.0
    num_replicas: int = 1
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.02
    batch_across_requests: bool = False
    visualize: bool = True

    def __post_init__(self) -> None:
        _check(1 <= self.port <= 65535, "port", self.port)
        _check(self.max_pdf_pages >= 1, "max_pdf_pages", self.max_pdf_pages)
        _check(self.max_batch_size >= 1, "max_batch_size", self.max_batch_size)
