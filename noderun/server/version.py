"""The installed package's version (its metadata), for ``--version`` and ``/version``."""

from __future__ import annotations

import importlib.metadata

__all__ = ["VERSION"]


def _version() -> str:
    try:
        return importlib.metadata.version("noderun")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "0+unknown"


VERSION = _version()
