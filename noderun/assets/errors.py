"""Errors of the asset store.

::

    AssetError
    ├── AssetStoreUnavailable   the directory cannot be created or written (a start-up error)
    ├── AssetNotFound           no such asset for this user (absent, another user's, expired)
    ├── AssetTooLarge           an upload passed the configured limit
    └── FormError               the client sent a malformed multipart body

``AssetNotFound``, ``AssetTooLarge`` and ``FormError`` are the client's doing; the HTTP
layer maps them to 404, 413 and 400.
"""

from __future__ import annotations

__all__ = [
    "AssetError",
    "AssetNotFound",
    "AssetStoreUnavailable",
    "AssetTooLarge",
    "FormError",
]


class AssetError(Exception):
    """Root of the asset store's errors."""


class AssetStoreUnavailable(AssetError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"asset directory {path} is not usable: {reason}")
        self.path = path
        self.reason = reason


class AssetNotFound(AssetError):
    def __init__(self, asset_id: str) -> None:
        super().__init__(f"asset {asset_id!r} not found")
        self.asset_id = asset_id


class AssetTooLarge(AssetError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the configured {limit} byte limit")
        self.limit = limit


class FormError(AssetError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
