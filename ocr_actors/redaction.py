"""Credentials out of everything the job writes or prints: URLs with a user and password
(``https://user:pass@host/…``, ``s3://KEY:SECRET@bucket``, also quoted without the scheme in
a storage library's message) and signed URLs' query parameters (``X-Amz-Signature=…``,
``token=…``)."""

from __future__ import annotations

import logging
import re

URL_CREDENTIALS = re.compile(r"[^\s/@:'\"]+:[^\s/@'\"]+@")  # user:password@, with or without a scheme before
SECRET_QUERY_PARAMETER = re.compile(
    r"(?i)(?<=[?&])((?:x-amz-|x-goog-)?(?:signature|credential|security-token)|sig|token|access_token"
    r"|awsaccesskeyid|key|api_key|apikey|password|secret)=[^&#\s'\"]+"
)
REDACTED = "***"


def redact_text(text: str) -> str:
    """``text`` with URL credentials and secret query values replaced by ``***``. Idempotent;
    text with neither ``@`` nor ``=`` is returned as is (cheap enough for every listed URI)."""
    if "@" not in text and "=" not in text:
        return text
    text = URL_CREDENTIALS.sub(f"{REDACTED}@", text)
    return SECRET_QUERY_PARAMETER.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


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
