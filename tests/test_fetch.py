"""URL inputs against real local HTTP(S) servers: the connection goes to the vetted address.

Name resolution is the one thing faked (``socket.getaddrinfo`` answers made-up ``.test`` names
the way a hostile DNS server would); sockets, HTTP, TLS and the fetch code are real.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ocr_actors.service import fetch
from ocr_actors.service.config import ServiceConfig
from ocr_actors.service.fetch import check_url, fetch_url, vet_url
from ocr_actors.service.protocol import ApiError, parse_request

PNG = cv2.imencode(".png", np.full((24, 40, 3), 200, np.uint8))[1].tobytes()
MAX_BYTES = 4096


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host")))
        path = self.path.split("?", 1)[0]
        if path == "/page.png":
            self._answer(200, PNG)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/page.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/big":
            self._answer(200, b"\0" * (MAX_BYTES + 100))
        elif path == "/big-unannounced":  # no Content-Length: read until the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\0" * (MAX_BYTES + 100))
        elif path == "/trickle":  # one byte every 0.1 s: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "60")
            self.end_headers()
            for _ in range(60):
                try:
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        elif path == "/slow-headers":  # the status line and headers a byte every 0.1 s
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60 + b"\r\nContent-Length: 1\r\n\r\n\0":
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        elif path == "/broken":
            self._answer(500, b"oops")
        else:
            self._answer(404, b"not here")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str | None]] = []
        self.sni: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda sslobj, name, ctx: self.sni.append(name)  # type: ignore[assignment]
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[_Server]:
    server = _Server(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serve()


class _FakeDNS:
    """``socket.getaddrinfo`` for made-up names: the first lookup of a name gets its first
    answer, every later lookup its last one (a rebinding DNS server); other names resolve
    for real."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: dict[str, int] = {}
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return self._real(host, port, family, type, proto, flags)
        count = self.lookups[name] = self.lookups.get(name, 0) + 1
        sequence = self.answers[name]
        infos: list[tuple[Any, ...]] = []
        for address in sequence[min(count, len(sequence)) - 1]:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))))
        return infos


def _allow_loopback(monkeypatch: pytest.MonkeyPatch, *allowed: str) -> None:
    """Relax the vetting rule for a test: these loopback addresses count as public."""
    ips = {ipaddress.ip_address(a) for a in allowed}
    monkeypatch.setattr(fetch, "_address_allowed", lambda ip: ip in ips)


def test_a_rebinding_dns_answer_cannot_steer_the_connection_to_loopback(monkeypatch, server):
    # First lookup: a public address (unreachable here); any later lookup: the local server.
    dns = _FakeDNS(monkeypatch, {"img.rebind.test": [["8.8.8.8"], ["127.0.0.1"]]})
    url = f"http://img.rebind.test:{server.port}/page.png"
    with pytest.raises(ApiError) as info:
        fetch_url(url, ("img.rebind.test",), MAX_BYTES, timeout_s=1.0)
    assert info.value.status == 422 and "cannot fetch" in info.value.message
    assert server.requests == [] and dns.lookups == {"img.rebind.test": 1}


def test_the_connection_goes_to_the_vetted_address_only(monkeypatch, server):
    # 127.0.0.2 is vetted (relaxed rule) but nothing listens there; a second lookup would
    # give 127.0.0.1 where the server is.
    _allow_loopback(monkeypatch, "127.0.0.2")
    dns = _FakeDNS(monkeypatch, {"img.rebind.test": [["127.0.0.2"], ["127.0.0.1"]]})
    with pytest.raises(ApiError, match="cannot fetch the URL: ConnectionRefusedError") as info:
        fetch_url(f"http://img.rebind.test:{server.port}/page.png", (".rebind.test",), MAX_BYTES, 5.0)
    assert info.value.status == 422
    assert server.requests == [] and dns.lookups == {"img.rebind.test": 1}


def test_a_pinned_fetch_sends_the_original_host_and_returns_the_body(monkeypatch, server):
    _allow_loopback(monkeypatch, "127.0.0.1")
    dns = _FakeDNS(monkeypatch, {"img.pinned.test": [["127.0.0.1"], ["127.0.0.2"]]})
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # ignored: URL inputs connect directly
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    url = f"http://img.pinned.test:{server.port}/page.png?size=small&t=a b"
    assert fetch_url(url, (".pinned.test",), MAX_BYTES, 5.0) == PNG
    assert server.requests == [("/page.png?size=small&t=a%20b", f"img.pinned.test:{server.port}")]
    assert dns.lookups == {"img.pinned.test": 1}
    # The service's request path: parse_request with the fetcher the app builds.
    dns.answers["img.pinned.test"] = [["127.0.0.1"]]
    config = ServiceConfig(allow_url_inputs=True, url_allowlist=(".pinned.test",), max_body_bytes=MAX_BYTES)
    parsed = parse_request(
        {"file": url}, config, lambda u: fetch_url(u, config.url_allowlist, config.max_body_bytes, 5.0)
    )
    assert parsed.data_info == {"type": "image", "width": 40, "height": 24}


def test_a_vetted_url_holds_every_address_in_resolver_order(monkeypatch):
    _allow_loopback(monkeypatch, "127.0.0.3", "127.0.0.4", "::1")
    _FakeDNS(monkeypatch, {"multi.test": [["127.0.0.3", "::1", "127.0.0.4", "127.0.0.3"]]})
    vetted = vet_url("https://Multi.TEST/a%20b/c d.png", ("multi.test",))
    assert (vetted.scheme, vetted.host, vetted.port, vetted.target) == ("https", "multi.test", 443, "/a%20b/c%20d.png")
    assert [sockaddr[0] for _, sockaddr in vetted.addresses] == ["127.0.0.3", "::1", "127.0.0.4"]
    assert check_url("http://multi.test:8080/", ("multi.test",)) == ("multi.test", 8080)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/redirect", 403, "may not redirect"),
        ("/big", 413, f"larger than {MAX_BYTES} bytes"),
        ("/big-unannounced", 413, f"larger than {MAX_BYTES} bytes"),
        ("/missing?token=s3cret", 422, "answered HTTP 404"),
        ("/broken", 422, "answered HTTP 500"),
    ],
)
def test_redirects_oversize_and_error_answers_are_refused(monkeypatch, server, path, status, message):
    _allow_loopback(monkeypatch, "127.0.0.1")
    _FakeDNS(monkeypatch, {"img.pinned.test": [["127.0.0.1"]]})
    with pytest.raises(ApiError) as info:
        fetch_url(f"http://img.pinned.test:{server.port}{path}", ("img.pinned.test",), MAX_BYTES, 5.0)
    assert info.value.status == status and message in info.value.message
    assert "s3cret" not in info.value.message
    assert [p for p, _ in server.requests] == [path]  # the redirect was not followed


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("http://[::ffff:127.0.0.1]/a.png", None),
        ("http://[::ffff:169.254.169.254]/latest/meta-data", None),
        ("http://mapped.test/a.png", ["::ffff:127.0.0.1"]),
        ("http://mapped.test/a.png", ["::ffff:10.1.2.3"]),
        ("http://mapped.test/a.png", ["8.8.8.8", "::ffff:169.254.169.254"]),  # every address counts
        ("http://mapped.test/a.png", ["2002:7f00:1::1"]),  # 6to4 around 127.0.0.1
        ("http://mapped.test/a.png", ["64:ff9b::a9fe:a9fe"]),  # NAT64 around 169.254.169.254
        ("http://mapped.test/a.png", ["::127.0.0.1"]),  # IPv4-compatible
        ("http://mapped.test/a.png", ["::ffff:0:127.0.0.1"]),  # IPv4-translated
        ("http://mapped.test/a.png", ["64:ff9b:1::a00:1"]),  # local-use NAT64 around 10.0.0.1
    ],
)
def test_ipv4_in_ipv6_loopback_and_private_addresses_are_refused(monkeypatch, url, answers):
    if answers is not None:
        _FakeDNS(monkeypatch, {"mapped.test": [answers]})
    allow = ("mapped.test", "::ffff:127.0.0.1", "::ffff:169.254.169.254")
    with pytest.raises(ApiError, match="non-public address") as info:
        fetch_url(url, allow, MAX_BYTES, 1.0)
    assert info.value.status == 403


def test_public_addresses_pass_the_vetting_rule():
    for address in ("8.8.8.8", "::ffff:8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1", "64:ff9b::808:808"):
        assert fetch._address_allowed(ipaddress.ip_address(address)), address
    refused = ("127.0.0.1", "10.0.0.1", "100.64.0.1", "169.254.169.254", "::1", "fe80::1", "fc00::1", "::")
    for address in (*refused, "64:ff9b:1::808:808"):  # local-use NAT64: the network's own translator
        assert not fetch._address_allowed(ipaddress.ip_address(address)), address


def test_bad_urls_are_refused_without_echoing_credentials():
    for url, status, message in (
        ("http://user:s3cret@example.com/a.png", 403, "no credentials"),
        ("http://:s3cret@example.com/a.png", 403, "no credentials"),
        ("http://example.com:99999/a.png", 422, "port is not valid"),
        ("gopher://example.com/", 403, "only http and https"),
    ):
        with pytest.raises(ApiError, match=message) as info:
            fetch_url(url, ("example.com",), MAX_BYTES, 1.0)
        assert info.value.status == status and "s3cret" not in info.value.message


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path, monkeypatch) -> Iterator[_Server]:
    cert_path, key_path = _self_signed(tmp_path, "img.tls.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the client's trust store: this cert only
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    yield from _serve(context)


def test_https_verifies_the_certificate_against_the_original_host_name(monkeypatch, tls_server):
    # The certificate names img.tls.test only (no IP): verification against the pinned
    # 127.0.0.1 would fail; SNI must carry the host name too.
    _allow_loopback(monkeypatch, "127.0.0.1")
    _FakeDNS(monkeypatch, {"img.tls.test": [["127.0.0.1"]], "other.tls.test": [["127.0.0.1"]]})
    allow = (".tls.test",)
    assert fetch_url(f"https://img.tls.test:{tls_server.port}/page.png", allow, MAX_BYTES, 5.0) == PNG
    assert tls_server.sni == ["img.tls.test"]
    assert tls_server.requests == [("/page.png", f"img.tls.test:{tls_server.port}")]
    # Same server, same address, a host name the certificate does not name: refused.
    with pytest.raises(ApiError, match="cannot fetch the URL: SSLCertVerificationError") as info:
        fetch_url(f"https://other.tls.test:{tls_server.port}/page.png", allow, MAX_BYTES, 5.0)
    assert info.value.status == 422 and len(tls_server.requests) == 1


def test_a_server_trickling_bytes_hits_the_total_deadline(monkeypatch, server):
    _allow_loopback(monkeypatch, "127.0.0.1")
    _FakeDNS(monkeypatch, {"img.pinned.test": [["127.0.0.1"]]})
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        fetch_url(f"http://img.pinned.test:{server.port}/trickle", ("img.pinned.test",), MAX_BYTES, 0.8)
    assert info.value.status == 422 and "TimeoutError" in info.value.message
    assert time.monotonic() - started < 3.0  # not the 6 s the body takes


def test_a_server_trickling_its_headers_hits_the_total_deadline(monkeypatch, server):
    """Each header byte comes within the socket timeout, the status line and headers take 8 s:
    the deadline covers the whole exchange, not only the body."""
    _allow_loopback(monkeypatch, "127.0.0.1")
    _FakeDNS(monkeypatch, {"img.pinned.test": [["127.0.0.1"]]})
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"cannot fetch the URL: TimeoutError: not done within 0\.8 s") as info:
        fetch_url(f"http://img.pinned.test:{server.port}/slow-headers", ("img.pinned.test",), MAX_BYTES, 0.8)
    assert info.value.status == 422
    assert time.monotonic() - started < 3.0


def test_a_name_lookup_that_hangs_is_given_up_at_the_deadline(monkeypatch):
    """The system resolver has no timeout of its own (a dead DNS server: its retries, 5 s
    each); the lookup counts against the URL timeout like the rest of the download."""
    real = socket.getaddrinfo
    release = threading.Event()

    def hanging(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host) == "slow.dns.test":
            release.wait(10)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    started = time.monotonic()
    try:
        with pytest.raises(ApiError, match=r"cannot resolve slow\.dns\.test: no answer within 0\.5 s") as info:
            fetch_url("http://slow.dns.test/page.png", ("slow.dns.test",), MAX_BYTES, 0.5)
    finally:
        release.set()
    assert info.value.status == 422 and time.monotonic() - started < 2.0


def test_lookups_that_hang_hold_up_no_other_request(monkeypatch, server):
    """Twelve requests to names whose lookups hang give up at their deadlines; a request to
    a name that answers is fetched at once all the while, and after."""
    _allow_loopback(monkeypatch, "127.0.0.1")
    fake = _FakeDNS(monkeypatch, {"img.pinned.test": [["127.0.0.1"]]})
    release = threading.Event()

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if str(host).startswith("slow"):
            release.wait(20)
        return fake(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    errors: list[str] = []

    def slow(i: int) -> None:
        try:
            fetch_url(f"http://slow{i}.test/page.png", (f"slow{i}.test",), MAX_BYTES, 0.5)
        except ApiError as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(12)]
    try:
        for t in threads:
            t.start()
        for _ in range(2):  # while the slow lookups hang, and after their requests gave up
            started = time.monotonic()
            body = fetch_url(f"http://img.pinned.test:{server.port}/page.png", ("img.pinned.test",), MAX_BYTES, 0.5)
            assert body == PNG and time.monotonic() - started < 0.5
            for t in threads:
                t.join(5)
    finally:
        release.set()
    assert len(errors) == 12 and all("no answer within 0.5 s" in e for e in errors)


def test_connects_that_hang_keep_to_the_whole_download_deadline(monkeypatch):
    """A name with two addresses whose connects never answer: the tries share the deadline
    (not the socket timeout each), so the download fails by ``url_timeout_s``."""
    _allow_loopback(monkeypatch, "127.0.0.1", "127.0.0.2")
    _FakeDNS(monkeypatch, {"img.hang.test": [["127.0.0.1", "127.0.0.2"]]})
    real_connect = socket.socket.connect

    def hanging_connect(sock: socket.socket, address: Any) -> None:
        if address[0] in ("127.0.0.1", "127.0.0.2") and address[1] == 9:
            time.sleep(sock.gettimeout() or 0)
            raise TimeoutError("timed out")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", hanging_connect)
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"TimeoutError: not done within 1 s") as info:
        fetch_url("http://img.hang.test:9/page.png", ("img.hang.test",), MAX_BYTES, 1.0)
    assert info.value.status == 422 and time.monotonic() - started < 1.5
