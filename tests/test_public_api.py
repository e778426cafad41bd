"""What ``import noderun`` offers, and that the package declares its types (py.typed)."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import tomllib
from pathlib import Path

import noderun

EXPORTS = {
    "node",
    "NodeContext",
    "NodeSpec",
    "Registry",
    "create_app",
    "serve",
    "Settings",
    "__version__",
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(noderun.__all__) == EXPORTS
    assert len(noderun.__all__) == len(EXPORTS)


def test_each_export_is_the_real_thing() -> None:
    from noderun.runtime.context import NodeContext
    from noderun.runtime.node import NodeSpec, node
    from noderun.runtime.registry import Registry
    from noderun.server.app import create_app
    from noderun.server.serve import serve
    from noderun.server.settings import Settings

    assert noderun.node is node
    assert noderun.NodeContext is NodeContext
    assert noderun.NodeSpec is NodeSpec
    assert noderun.Registry is Registry
    assert noderun.create_app is create_app
    assert noderun.serve is serve
    assert noderun.Settings is Settings


def test_each_name_imports_from_the_package() -> None:
    namespace: dict[str, object] = {}
    for name in EXPORTS:
        exec(f"from noderun import {name}", namespace)
        assert namespace[name] is getattr(noderun, name)


def test_version_comes_from_the_package_metadata() -> None:
    assert noderun.__version__ == importlib.metadata.version("noderun")


def test_the_package_is_marked_typed_and_ships_the_marker() -> None:
    assert importlib.resources.files("noderun").joinpath("py.typed").is_file()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["noderun"]
