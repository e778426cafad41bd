"""Optional bearer-token auth for ``/ws`` (PROTOCOL.md §1)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qs

__all__ = ["ANONYMOUS_USER", "Authenticator"]

ANONYMOUS_USER = "1"


class Authenticator:
    """Checks ``Authorization: Bearer <token>``, else ``?api_key=<token>``."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(token.encode() for token in tokens if token)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(
        self, headers: Iterable[tuple[bytes, bytes]], query_string: bytes
    ) -> tuple[str | None, str]:
        """``(user_id, "")`` when allowed, else ``(None, close reason)``."""
        if not self._tokens:
            return ANONYMOUS_USER, ""
        token = _bearer(headers)
        if token is None:
            values = parse_qs(query_string.decode("latin-1")).get("api_key")
            token = values[0].encode() if values else None
        if not token:
            return None, "Missing authentication"
        # Compare against every token in constant time, so timing reveals nothing.
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(token, known)
        if not matched:
            return None, "Invalid authentication"
        return "user-" + hashlib.sha256(token).hexdigest()[:16], ""


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                return credentials.strip()
    return None
