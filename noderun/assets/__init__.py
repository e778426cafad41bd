"""Stored assets (media bytes uploaded over HTTP) and ``asset://`` references to them.

Independent of the server: the HTTP routes live in ``noderun.server.assets_api``, and
node integrations resolve references with :class:`AssetResolver`.
"""

from noderun.assets.errors import (
    AssetError,
    AssetNotFound,
    AssetStoreUnavailable,
    AssetTooLarge,
    FormError,
)
from noderun.assets.refs import ASSET_SCHEME, AssetResolver, ResolvedAsset, asset_id_of, asset_uri
from noderun.assets.store import AssetRecord, AssetStore, Upload

__all__ = [
    "ASSET_SCHEME",
    "AssetError",
    "AssetNotFound",
    "AssetRecord",
    "AssetResolver",
    "AssetStore",
    "AssetStoreUnavailable",
    "AssetTooLarge",
    "FormError",
    "ResolvedAsset",
    "Upload",
    "asset_id_of",
    "asset_uri",
]
