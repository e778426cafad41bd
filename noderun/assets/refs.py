"""NodeTool media values that point at a stored asset, and how to get their bytes.

NodeTool passes media as maps such as ``{"type": "image", "uri": "asset://<id>",
"asset_id": "<id>", "data": null}``. The SDK fills them three ways: a persistent upload
sets ``asset_id`` (and ``uri`` to the asset's download URL), a temporary upload sets only
``uri`` (``asset://<id>``), and a small value carries its bytes in ``data``. A value
refers to a stored asset when it is such a map (it has a string ``type``) and either its
``asset_id`` is set or its ``uri`` is ``asset://<id>`` (``asset:///<id>`` and a file
extension after the id are accepted, as the SDK writes them) or an asset download URL
(``[http://host]/api/assets/<id>/download``, the ``get_url`` the SDK copies into ``uri``).

:class:`AssetResolver` answers for one user: another user's asset is not found, exactly
as over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from noderun.assets.errors import AssetNotFound
from noderun.assets.store import AssetRecord, AssetStore

__all__ = ["ASSET_SCHEME", "AssetResolver", "ResolvedAsset", "asset_id_of", "asset_uri"]

ASSET_SCHEME = "asset://"
_DOWNLOAD_PREFIX = "/api/assets/"
_DOWNLOAD_SUFFIX = "/download"


def asset_uri(asset_id: str) -> str:
    """The ``asset://`` reference of ``asset_id``."""
    return ASSET_SCHEME + asset_id


def asset_id_of(value: object) -> str | None:
    """The id of the stored asset ``value`` refers to; ``None`` when it refers to none."""
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        return None
    asset_id = value.get("asset_id")
    if isinstance(asset_id, str) and asset_id.strip():
        return asset_id.strip()
    uri = value.get("uri")
    return _id_from_uri(uri) if isinstance(uri, str) else None


def _id_from_uri(uri: str) -> str | None:
    text = uri.strip()
    if text[:6].lower() == "asset:":
        key = unquote(text[6:].lstrip("/"))
        # ``asset://<id>.png``: NodeTool names stored files after the id plus an extension.
        key = key.partition(".")[0]
        return key or None
    parts = urlsplit(text)
    if parts.scheme.lower() not in {"", "http", "https"}:
        return None
    path = parts.path
    if path.startswith(_DOWNLOAD_PREFIX) and path.endswith(_DOWNLOAD_SUFFIX):
        key = path[len(_DOWNLOAD_PREFIX) : -len(_DOWNLOAD_SUFFIX)]
        return unquote(key) if key and "/" not in key else None
    return None


@dataclass(frozen=True, slots=True)
class ResolvedAsset:
    record: AssetRecord
    path: Path

    def read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            # Expired and swept between the lookup and the read.
            raise AssetNotFound(self.record.id) from None


class AssetResolver:
    """Resolves ``user_id``'s asset references against ``store`` (blocking file I/O)."""

    def __init__(self, store: AssetStore, user_id: str) -> None:
        self._store = store
        self._user_id = user_id

    def resolve(self, value: object) -> ResolvedAsset | None:
        """The asset ``value`` refers to; ``None`` when it refers to none;
        :class:`AssetNotFound` when it refers to one this user does not have."""
        asset_id = asset_id_of(value)
        if asset_id is None:
            return None
        record = self._store.get(self._user_id, asset_id)
        if record is None:
            raise AssetNotFound(asset_id)
        return ResolvedAsset(record, self._store.path(record))

    def read(self, value: object) -> bytes | None:
        """The bytes of the asset ``value`` refers to (``None``/:class:`AssetNotFound` as
        :meth:`resolve`)."""
        resolved = self.resolve(value)
        return None if resolved is None else resolved.read_bytes()

    def inline(self, value: object) -> object:
        """``value`` with every asset reference in it, however nested in lists and maps,
        replaced by a copy whose ``data`` holds the asset's bytes (the form a NodeTool
        node reads without storage access). Other values are returned as they are."""
        if isinstance(value, Mapping):
            resolved = self.resolve(value)
            if resolved is not None:
                inlined: dict[Any, Any] = dict(value)
                inlined["data"] = resolved.read_bytes()
                return inlined
            return {key: self.inline(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.inline(item) for item in value]
        return value
