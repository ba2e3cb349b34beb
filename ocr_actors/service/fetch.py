"""URL inputs for the service: http(s) only, allow-listed hosts, public addresses only.

The host name is resolved **once**; every address it resolves to is vetted (public addresses
only, IPv4 addresses embedded in IPv6 ones included), and the connection then goes to one of
exactly those addresses: nothing resolves the name again, so a DNS server that answers a second
lookup with ``127.0.0.1`` or ``169.254.169.254`` (DNS rebinding) cannot steer the request
elsewhere. The request still carries the URL's ``Host`` header and, for https, TLS uses the
URL's host name for SNI and certificate verification (the system's trust store).

URL inputs connect **directly**: ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` are ignored (a
proxy would resolve the name itself, out of reach of the checks). Redirects are refused, as
are non-2xx answers and bodies above the size limit. Error messages name the host at most,
never the URL's path, query or credentials.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from ocr_actors.service.protocol import ApiError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges that carry an IPv4 address: the embedded address must be public too.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Deprecated IPv4-compatible (::a.b.c.d, also :: and ::1) and SIIT IPv4-translated addresses,
# and the local-use NAT64 prefix (RFC 8215), a network's own translator to any IPv4 address.
_REFUSED_V6 = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


def host_allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    """``example.com`` matches itself; ``.example.com`` matches its subdomains."""
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.lower().rstrip(".")
        if entry.startswith(".") and host.endswith(entry):
            return True
        if host == entry:
            return True
    return False


def _address_allowed(ip: IPAddress) -> bool:
    """Whether a URL input may connect to ``ip``: public (``is_global``) addresses only.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is judged by its IPv4 address; 6to4
    and NAT64 addresses must be public and embed a public IPv4 address; IPv4-compatible,
    IPv4-translated and local-use NAT64 (``64:ff9b:1::/48``) addresses are refused.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_global
        if any(ip in net for net in _REFUSED_V6):
            return False
        embedded = ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not embedded.is_global:
            return False
    return ip.is_global


@dataclass(frozen=True)
class VettedURL:
    """A URL that passed :func:`vet_url`.

    Attributes:
        scheme: ``http`` or ``https``.
        host: the URL's host name (IDNA-encoded, lower case): ``Host`` header, SNI, certificate.
        port: the URL's port, or the scheme's default.
        target: the request target (path and query, percent-encoded).
        addresses: ``(family, sockaddr)`` of every address the host resolved to, all vetted,
            in resolver order; connections go to these and nowhere else.
    """

    scheme: str
    host: str
    port: int
    target: str
    addresses: tuple[tuple[int, tuple[Any, ...]], ...]


def _resolve(host: str, port: int, timeout_s: float | None) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` for TCP, given up after ``timeout_s`` (None: as long as it takes).

    The system resolver has no timeout of its own (a dead DNS server costs its retries, 5 s
    each), so the lookup runs on a daemon thread of its own and the caller waits for it no
    longer than its deadline; a lookup given up on finishes (or not) without holding anyone."""
    if timeout_s is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except BaseException as exc:  # handed to the caller as it is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=lookup, name="ocr-resolve", daemon=True).start()
    if not done.wait(max(timeout_s, 0.0)):
        raise ApiError(422, f"cannot resolve {host}: no answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return list(outcome["infos"])


def vet_url(url: str, allowlist: tuple[str, ...], timeout_s: float | None = None) -> VettedURL:
    """Refuse anything but http(s) to an allow-listed host that resolves only to public
    addresses; resolve the host once (within ``timeout_s``) and return the vetted addresses.

    Raises:
        ApiError: 403 for a refused URL, 422 for one that cannot be resolved (in time) or parsed.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:  # an unclosed or misplaced IPv6 bracket: "http://[::1/x"
        raise ApiError(422, "the URL is not valid") from exc
    if parts.scheme not in ("http", "https"):
        raise ApiError(403, "only http and https URLs are accepted")
    if not host or parts.username or parts.password:
        raise ApiError(403, "the URL must name a host and carry no credentials")
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ApiError(422, "the URL's host name is not valid") from exc
    if not host_allowed(host, allowlist):
        raise ApiError(403, f"the host {host} is not on this service's URL allow-list")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ApiError(422, "the URL's port is not valid") from exc
    try:
        infos = _resolve(host, port, timeout_s)
    except (OSError, UnicodeError) as exc:
        raise ApiError(422, f"cannot resolve {host}") from exc
    addresses: list[tuple[int, tuple[Any, ...]]] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ApiError(403, f"the host {host} resolves to a non-IP address")
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if not _address_allowed(ip):
            raise ApiError(403, f"the host {host} resolves to a non-public address")
        if (family, sockaddr) not in addresses:
            addresses.append((int(family), tuple(sockaddr)))
    if not addresses:
        raise ApiError(422, f"cannot resolve {host}")
    # Keep reserved characters and existing %-escapes; encode spaces, controls and non-ASCII.
    target = quote(parts.path or "/", safe="/%;:@&=+$,!~*'()[]") + (
        "?" + quote(parts.query, safe="/%;:@&=+$,!~*'()[]?") if parts.query else ""
    )
    return VettedURL(parts.scheme, host, port, target, tuple(addresses))


def check_url(url: str, allowlist: tuple[str, ...]) -> tuple[str, int]:
    """Refuse anything but http(s) to an allow-listed host that resolves only to public
    addresses. Returns ``(host, port)``; :func:`vet_url` also returns the vetted addresses."""
    vetted = vet_url(url, allowlist)
    return vetted.host, vetted.port


def _time_left(timeout_s: float, deadline: float | None) -> float:
    """``timeout_s``, or less when ``deadline`` (``time.monotonic``) comes sooner; raises
    ``TimeoutError`` once it has passed."""
    left = timeout_s if deadline is None else min(timeout_s, deadline - time.monotonic())
    if left <= 0:
        raise TimeoutError("the URL timeout passed")
    return left


def _connect(
    addresses: tuple[tuple[int, tuple[Any, ...]], ...], timeout_s: float, deadline: float | None = None
) -> socket.socket:
    """A TCP connection to the first vetted address that answers (no name resolution), each
    try within ``timeout_s`` and all of them by ``deadline``; the socket's timeout is then
    ``timeout_s``."""
    error: OSError = OSError("no address to connect to")
    for family, sockaddr in addresses:
        left = _time_left(timeout_s, deadline)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(left)
            sock.connect(sockaddr)
            sock.settimeout(timeout_s)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to vetted addresses only, for the URL's host name.

    ``self.host`` stays the URL's host name, so http.client sends it as the ``Host`` header;
    ``connect`` never resolves it. With ``tls``, the socket is wrapped with SNI and
    certificate (and host name) verification for that host name.
    """

    def __init__(
        self, vetted: VettedURL, timeout_s: float, tls: ssl.SSLContext | None, deadline: float | None = None
    ) -> None:
        super().__init__(vetted.host, vetted.port, timeout=timeout_s)
        self._vetted = vetted
        self._timeout_s = timeout_s
        self._tls = tls
        self._deadline = deadline

    def connect(self) -> None:
        # Before ``self.sock`` is set the watchdog has no socket to cut: the connect and the TLS
        # handshake keep to the deadline themselves.
        sock = _connect(self._vetted.addresses, self._timeout_s, self._deadline)
        if self._tls is not None:
            try:
                sock.settimeout(_time_left(self._timeout_s, self._deadline))
                sock = self._tls.wrap_socket(sock, server_hostname=self._vetted.host)
                sock.settimeout(self._timeout_s)
            except BaseException:
                sock.close()
                raise
        self.sock = sock


def _tls_context() -> ssl.SSLContext:
    """The default client context: system trust store, CERT_REQUIRED, host name checking."""
    return ssl.create_default_context()


def _read_by_deadline(response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes:
    """Read at most ``limit`` bytes, giving up at ``deadline`` (``time.monotonic``): the socket
    timeout bounds each read, this bounds the whole body (a server trickling bytes)."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError("the download took longer than the URL timeout")
        part = response.read1(min(64 << 10, limit - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _cut_off(conn: http.client.HTTPConnection) -> None:
    """Shut down ``conn``'s socket, if it has one, so a read blocked on it ends now."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def fetch_url(url: str, allowlist: tuple[str, ...], max_bytes: int, timeout_s: float) -> bytes:
    """Download an allowed URL (no redirects, direct connection), at most ``max_bytes``,
    within ``timeout_s`` for each socket operation and for the whole of it (name lookup,
    request, status line, headers and body).

    Raises:
        ApiError: 403 refused (scheme, credentials, host, address, redirect), 413 larger than
            ``max_bytes``, 422 cannot resolve, connect, verify, or a non-2xx answer.
    """
    deadline = time.monotonic() + timeout_s
    vetted = vet_url(url, allowlist, timeout_s)
    conn = _PinnedConnection(vetted, timeout_s, _tls_context() if vetted.scheme == "https" else None, deadline)
    # The socket timeout bounds each read; this bounds the whole exchange (a server sending its
    # status line and headers a byte at a time): at the deadline the socket is shut down.
    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), _cut_off, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request(
            "GET",
            vetted.target,
            headers={"User-Agent": "ocr-batch", "Accept": "*/*", "Accept-Encoding": "identity", "Connection": "close"},
        )
        response = conn.getresponse()
        if 300 <= response.status < 400:
            raise ApiError(403, "URL inputs may not redirect")
        if not 200 <= response.status < 300:
            raise ApiError(422, f"cannot fetch the URL: {vetted.host} answered HTTP {response.status}")
        length = response.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > max_bytes:
            raise ApiError(413, f"the URL's content is larger than {max_bytes} bytes")
        data = _read_by_deadline(response, max_bytes + 1, deadline)
    except ApiError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if time.monotonic() >= deadline:
            raise ApiError(422, f"cannot fetch the URL: TimeoutError: not done within {timeout_s:g} s") from exc
        raise ApiError(422, f"cannot fetch the URL: {type(exc).__name__}") from exc
    finally:
        watchdog.cancel()
        conn.close()
    if len(data) > max_bytes:
        raise ApiError(413, f"the URL's content is larger than {max_bytes} bytes")
    return data
