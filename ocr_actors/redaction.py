"""Credentials out of everything the job writes or prints: URLs with a user and password
(``https://user:pass@host/…``, ``s3://KEY:SECRET@bucket``, also quoted without the scheme in
a storage library's message) and signed URLs' query parameters (``X-Amz-Signature=…``,
``token=…``)."""

from __future__ import annotations

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
