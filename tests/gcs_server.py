"""A Google Cloud Storage emulator for tests: ``gcp-storage-emulator`` (pure Python, from
PyPI) in a subprocess on a free 127.0.0.1 port, in memory, with one bucket.

Use :func:`running_gcs_server` (a context manager), or the session fixture :func:`gcs_server`
(register it with ``pytest_plugins = ["tests.gcs_server"]``, or define a fixture that wraps
:func:`running_gcs_server`).

Notes on ``gcp-storage-emulator`` 2026.7.19 with ``gcsfs`` 2026.10.1 (checked by hand):

- gcsfs reaches it with ``endpoint_url="http://127.0.0.1:PORT"`` and ``token="anon"`` (the
  emulator checks no credentials). ``STORAGE_EMULATOR_HOST`` (still with ``token="anon"``)
  works too, but explicit storage options also reach the Ray workers, whatever their environment.
- gcsfs 2026.10.1 makes ``gcsfs.GCSFileSystem`` its ``ExtendedGcsFileSystem`` (unless
  ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` is set before it is imported), which asks the
  Storage Control gRPC API for the bucket's type before opening a file. Against an HTTP-only
  emulator that call fails (TLS handshake on the HTTP port) and is retried for 60 s, on every
  ``open``, since a failed answer is not cached. The storage option ``retry_timeout=0`` makes
  it give up after one try (then it falls back to the plain JSON API, logging a warning;
  gRPC prints "Handshake failed" lines, and the emulator logs a BrokenPipeError traceback):
  :attr:`GCSServer.storage_options` sets it. Older gcsfs ignores the option.
- gcsfs 2026.10.1 moves objects with the JSON API's ``moveTo``, which the emulator does not
  implement: it answers 501, which gcsfs retries 6 times with backoff (about 35 s per move)
  before falling back to copy and delete. The job moves every part file into place, so the
  emulator is started here through :func:`serve`, which adds ``moveTo`` (copy, then delete
  the source) unless the installed emulator already has it.
- The emulator serves one request at a time (``http.server.HTTPServer``, HTTP/1.0): enough
  for a few workers on small files.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.s3_server import http_status, port_free, stop_process

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# Above Ray's worker port range (10002-19999).
PORT_RANGE = (20000, 55000)


def free_port() -> int:
    """A port free on 127.0.0.1 now (another process may still take it before the emulator
    binds it: :func:`start_gcs_server` retries)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*PORT_RANGE)
        if port_free(port):
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE} on {HOST}")


@dataclass
class GCSServer:
    """A running emulator: its endpoint, bucket and process."""

    endpoint_url: str
    bucket: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/gcsfs options for this server (a fresh dict each time)."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "retry_timeout": 0}

    def env(self) -> dict[str, str]:
        """The environment variable that points gcsfs (and Google's clients) at this server."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint_url}

    def filesystem(self, **options: Any):  # type: ignore[no-untyped-def]
        """A new (uncached) ``gcsfs.GCSFileSystem`` for this server, options overriding."""
        import gcsfs

        return gcsfs.GCSFileSystem(**{**self.storage_options, **options}, skip_instance_cache=True)

    def url(self, *parts: str) -> str:
        """``gs://bucket/part/part``."""
        return "gs://" + "/".join([self.bucket, *(p.strip("/") for p in parts)])

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; idempotent."""
        stop_process(self.process, timeout)


def _bucket_ready(server: GCSServer) -> bool:
    try:
        server.filesystem().ls(server.bucket, refresh=True)
        return True
    except OSError:  # FileNotFoundError included
        return False


def _start_once(folder: Path, bucket: str, timeout: float) -> GCSServer:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"gcs-emulator-{port}.log"
    command = [sys.executable, "-m", "tests.gcs_server", "--host", HOST, "--port", str(port), "--bucket", bucket]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
    atexit.register(stop_process, process, 5.0)
    server = GCSServer(f"http://{HOST}:{port}", bucket, port, folder, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited with {process.returncode}:\n{server.log_tail()}")
        # A failed bind kills the emulator's server thread, not its process. (Tracebacks of
        # single requests are no reason: gcsfs's gRPC probe makes one, see above.)
        if "Exception in thread" in server.log_tail(1 << 20):
            server.stop()
            raise RuntimeError(f"gcp-storage-emulator failed on port {port}:\n{server.log_tail()}")
        if http_status(server.endpoint_url) == 200 and _bucket_ready(server):
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"gcp-storage-emulator did not serve bucket {bucket} within {timeout} s:\n{server.log_tail()}")


def start_gcs_server(
    bucket: str = "ocr-test", folder: Path | None = None, timeout: float = 30.0, attempts: int = 3
) -> GCSServer:
    """Start the emulator (in memory) with an empty bucket; wait until the bucket answers.
    Retries on another port if the chosen one was taken meanwhile."""
    if not 3 <= len(bucket) <= 63:
        raise ValueError(f"GCS bucket names have 3 to 63 characters: {bucket!r}")
    base = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="gcs-"))
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            return _start_once(base / f"run{attempt}", bucket, timeout)
        except RuntimeError as exc:
            error = exc
    raise RuntimeError(
        f"could not start gcp-storage-emulator after {attempts} attempts "
        "(is it installed? pip install gcp-storage-emulator; it is in the dev extra)"
    ) from error


@contextlib.contextmanager
def running_gcs_server(bucket: str = "ocr-test", folder: Path | None = None) -> Iterator[GCSServer]:
    """A server for the ``with`` block; stopped (SIGTERM, then SIGKILL) on exit. A temporary
    folder made here is removed afterwards."""
    own = folder is None
    base = Path(tempfile.mkdtemp(prefix="gcs-")) if own else Path(folder)  # type: ignore[arg-type]
    server = start_gcs_server(bucket, base)
    try:
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    """A GCS emulator for the whole session (bucket ``ocr-test``)."""
    with running_gcs_server("ocr-test", tmp_path_factory.mktemp("gcs")) as server:
        yield server


# --------------------------------------------------------------------------- the emulator process


def _add_move_to() -> None:
    """Give the emulator the JSON API's ``POST b/{bucket}/o/{object}/moveTo/o/{dest}`` (GCS
    answers with the moved object's resource), unless it has it already."""
    from http import HTTPStatus

    from gcp_storage_emulator import server, settings
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    if any("moveTo" in regex for regex, _ in server.HANDLERS):
        return

    def move(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        params = request.params
        bucket, source, dest = params["bucket_name"], params["object_id"], params["dest_object_id"]
        try:
            moved = objects._copy(request.base_url, storage, bucket, source, bucket, dest)
            storage.delete_file(bucket, source)
        except NotFound:
            response.status = HTTPStatus.NOT_FOUND
            return
        response.json(moved)

    route = (
        rf"^{settings.API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)"
        r"/moveTo/o/(?P<dest_object_id>.*[^/]+)$",
        {server.POST: move},
    )
    server.HANDLERS = (route, *server.HANDLERS)


def serve(argv: Sequence[str] | None = None) -> None:
    """Run the emulator in this process (in memory, one bucket) until SIGTERM."""
    import argparse

    parser = argparse.ArgumentParser(description="gcp-storage-emulator for the tests, with moveTo")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args(argv)
    _add_move_to()
    from gcp_storage_emulator.__main__ import main

    main(["start", "--host", args.host, "--port", str(args.port), "--in-memory", "--default-bucket", args.bucket])


if __name__ == "__main__":
    serve()
