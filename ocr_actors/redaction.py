"""Credentials out of everything the job writes or prints: URLs with a user and password
(``https://user:pass@host/…``, ``s3://KEY:SECRET@bucket``, also quoted without the scheme in
a storage library's message) and signed URLs' query parameters (``X-Amz-Signature=…``,
``token=…``)."""

from __future__ import annotations

import logging
import re

URL_CREDENTIALS = re.compile(r"[^\s/@:'\"]+:(?!//|\d+/)[^\s@'\"]+@")
"""``user:password@``, with or without a scheme before; the password may hold ``/`` (about half
of AWS secret keys do), so a path with ``:`` before an ``@`` is hidden too (errs on hiding);
a scheme's ``://`` and a ``host:port/`` are no password."""
STORE_URL_CREDENTIALS = re.compile(r"(?i)\b((?:s3a?|gcs|gs)://)[^\s/@:'\"]+:[^\s@'\"]+@")
"""``user:password@`` right after an object store's scheme, whatever the password starts with
(``s3://KEY:1/ab…@``, ``s3://KEY://ab…@``, which :data:`URL_CREDENTIALS` takes for a port or a
scheme): a bucket name never holds ``:``."""
SECRET_QUERY_PARAMETER = re.compile(
    r"(?i)(?<=[?&])((?:x-amz-|x-goog-)?(?:signature|credential|security-token)|sig|token|access_token"
    r"|awsaccesskeyid|key|api_key|apikey|password|secret)=[^&#\s'\"]+"
)
REDACTED = "***"
STORE_SCHEMES = ("s3", "s3a", "gs", "gcs")
"""Object stores whose bucket names never hold ``:`` or ``@``: there ``KEY:SECRET@`` is user
information even with a ``/`` in the secret, and their libraries do not read it."""


def redact_text(text: str) -> str:
    """``text`` (a message, a traceback) with URL credentials and secret query values replaced
    by ``***``, wherever they stand: it errs on the side of hiding (any ``x:y@``). Idempotent;
    text with neither ``@`` nor ``=`` is returned as is. A source URI's own form is
    :func:`redact_uri`."""
    if "@" not in text and "=" not in text:
        return text
    text = STORE_URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = URL_CREDENTIALS.sub(f"{REDACTED}@", text)
    return SECRET_QUERY_PARAMETER.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


def store_uri_has_credentials(uri: str) -> bool:
    """Whether an S3 or GCS URI (:data:`STORE_SCHEMES`) has credentials written into it:
    ``s3://KEY:SECRET@bucket/…``, also with a ``/`` in the secret. s3fs and gcsfs do not read
    them (they would take them for the bucket's name, and quote them in their errors)."""
    scheme = uri.partition("://")[0].split("::")[-1].lower()
    return "@" in uri and scheme in STORE_SCHEMES and redact_uri(uri) != uri


def redact_uri(uri: str) -> str:
    """A source URI as the output holds it and resume knows it: the user information of a
    ``scheme://user:password@host/…`` authority becomes ``***``, and so do the secret query
    values of an ``http(s)`` URL (a signed URL). Nothing else changes: a local path or an
    object key may hold ``:``, ``@``, ``?`` and ``=`` in its names (``2024-05-01T10:30_a@b.png``)
    and stays as it is, so two different objects never share a key. Idempotent."""
    if "@" not in uri and "=" not in uri:  # nothing to redact (most URIs): no string built
        return uri
    head, separator, rest = uri.partition("://")
    protocols = head.split("::")  # fsspec chains protocols: simplecache::s3://…
    scheme = protocols[-1]
    if not separator or not all(p.replace("+", "").replace("-", "").replace(".", "").isalnum() for p in protocols):
        return uri  # a local path: nothing in it is a credential
    authority, slash, path = rest.partition("/")
    web = scheme.lower() in ("http", "https")
    if "@" not in authority and ":" in authority and "@" in rest and scheme.lower() in STORE_SCHEMES:
        # ``s3://KEY:SE/CRET@bucket/key``: a bucket name never holds ":", so this is user
        # information whose secret holds "/" (about half of AWS secret keys), up to the first "@"
        authority, slash, path = rest.split("@", 1)[1].partition("/")
        authority = f"{REDACTED}@{authority}"
    elif "@" in authority and (web or ":" in authority.rsplit("@", 1)[0]):
        # any user information of a URL (a token alone may be one); elsewhere a password's
        # ``user:password@`` only: ``abfs://container@account…`` names a container, not a secret
        authority = f"{REDACTED}@{authority.rsplit('@', 1)[1]}"
    if web and "=" in path:
        path = SECRET_QUERY_PARAMETER.sub(lambda m: f"{m.group(1)}={REDACTED}", path)
    return f"{head}{separator}{authority}{slash}{path}"


class RedactingFilter(logging.Filter):
    """Log filter that formats a record's message (and its traceback, if any) once and
    replaces it with :func:`redact_text` of it, so credentials in an output URI, a lease path
    or a storage library's exception never reach a log handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def redacting_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with a :class:`RedactingFilter` on it (added once). Filters
    act on the records logged to that logger itself, so every module that logs uses this."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
