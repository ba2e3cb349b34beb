"""URL inputs for the service: http(s) only, allow-listed hosts, public addresses only."""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from ocr_actors.service.protocol import ApiError


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


def check_url(url: str, allowlist: tuple[str, ...]) -> tuple[str, int]:
    """Refuse anything but http(s) to an allow-listed host that resolves only to public
    addresses. Returns ``(host, port)``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ApiError(403, "only http and https URLs are accepted")
    host = parts.hostname or ""
    if not host or parts.username or parts.password:
        raise ApiError(403, "the URL must name a host and carry no credentials")
    if not host_allowed(host, allowlist):
        raise ApiError(403, f"the host {host} is not on this service's URL allow-list")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError as exc:
        raise ApiError(422, f"cannot resolve {host}") from exc
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global:
            raise ApiError(403, f"the host {host} resolves to a non-public address")
    return host, port


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ApiError(403, "URL inputs may not redirect")


def fetch_url(url: str, allowlist: tuple[str, ...], max_bytes: int, timeout_s: float) -> bytes:
    """Download an allowed URL (no redirects), at most ``max_bytes``."""
    check_url(url, allowlist)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout_s) as response:  # the scheme is checked above
            data: bytes = response.read(max_bytes + 1)
    except ApiError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ApiError(422, f"cannot fetch the URL: {type(exc).__name__}") from exc
    if len(data) > max_bytes:
        raise ApiError(413, f"the URL's content is larger than {max_bytes} bytes")
    return data
