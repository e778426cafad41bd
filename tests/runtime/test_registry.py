"""Where a registry's nodes come from: built-in modules, debug nodes, node modules and
``noderun.nodes`` entry points; one type name twice fails naming both origins."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from noderun.runtime.errors import DuplicateNodeType, NodeSourceError
from noderun.runtime.nodes import DEBUG_NODES
from noderun.runtime.registry import (
    ENTRY_POINT_GROUP,
    Registry,
    default_registry,
    load_registry,
)


@pytest.fixture
def importable(tmp_path: Path) -> Iterator[Path]:
    """A directory on ``sys.path`` for modules (and dist-infos) a test writes; the modules
    imported from it are forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def write(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_debug_nodes_only_on_request() -> None:
    plain, debug = default_registry(), default_registry(debug_nodes=True)
    assert "noderun.debug.Sleep" not in plain
    assert "noderun.debug.Sleep" in debug
    assert len(debug) == len(plain) + len(DEBUG_NODES)


def test_a_module_registers_the_nodes_it_defines_not_those_it_imports(
    importable: Path,
) -> None:
    write(
        importable,
        "defines_two",
        """
        from noderun import node
        from noderun.runtime.nodes.text import concat  # imported: not this module's

        @node("m.One", inline=True)
        def one() -> int:
            return 1

        def helper() -> int:
            return 0

        @node("m.Two")
        async def two() -> int:
            return 2
        """,
    )
    registry = load_registry(["defines_two"], entry_points=False)
    assert "m.One" in registry and "m.Two" in registry
    assert registry.origin("m.One") == "defines_two"
    assert registry.origin("nodetool.text.Concat") == "noderun.runtime.nodes.text"


def test_a_module_that_cannot_be_imported_is_named(importable: Path) -> None:
    write(importable, "broken_nodes", "raise RuntimeError('boom at import')\n")
    with pytest.raises(NodeSourceError, match=r"broken_nodes.*boom at import"):
        load_registry(["broken_nodes"], entry_points=False)
    with pytest.raises(NodeSourceError, match="No module named"):
        load_registry(["no_such_nodes_module"], entry_points=False)


def test_a_module_without_nodes_is_refused(importable: Path) -> None:
    write(importable, "empty_nodes", "X = 1\n")
    with pytest.raises(NodeSourceError, match="defines no @node"):
        load_registry(["empty_nodes"], entry_points=False)


def test_one_type_name_in_two_modules_names_both(importable: Path) -> None:
    for name in ("left_nodes", "right_nodes"):
        write(
            importable,
            name,
            """
            from noderun import node

            @node("m.Same", inline=True)
            def same() -> int:
                return 1
            """,
        )
    with pytest.raises(DuplicateNodeType) as raised:
        load_registry(["left_nodes", "right_nodes"], entry_points=False)
    assert (raised.value.first, raised.value.second) == ("left_nodes", "right_nodes")
    assert "left_nodes" in str(raised.value) and "right_nodes" in str(raised.value)


def test_a_module_clashing_with_a_built_in_names_both(importable: Path) -> None:
    write(
        importable,
        "shadowing_nodes",
        """
        from noderun import node

        @node("nodetool.text.Concat", inline=True)
        def concat(a: str = "", b: str = "") -> str:
            return b + a
        """,
    )
    with pytest.raises(DuplicateNodeType, match=r"noderun\.runtime\.nodes\.text.*shadowing_nodes"):
        load_registry(["shadowing_nodes"], entry_points=False)


def dist_info(directory: Path, entry_points: str) -> None:
    info = directory / "pkg_nodes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg-nodes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


PACKAGE = """
from noderun import node

@node("pkg.A", inline=True)
def a() -> int:
    return 1

@node("pkg.B", inline=True)
def b() -> int:
    return 2

ONLY_B = [b]
"""


def test_an_entry_point_naming_a_module(importable: Path) -> None:
    write(importable, "pkg_nodes", PACKAGE)
    dist_info(importable, "all = pkg_nodes")
    registry = load_registry()
    assert "pkg.A" in registry and "pkg.B" in registry
    assert registry.origin("pkg.A") == "pkg_nodes (entry point 'all')"


def test_an_entry_point_naming_a_list_or_a_node(importable: Path) -> None:
    write(importable, "pkg_nodes", PACKAGE)
    dist_info(importable, "only-b = pkg_nodes:ONLY_B\njust-a = pkg_nodes:a")
    registry = load_registry()
    assert "pkg.A" in registry and "pkg.B" in registry


def test_an_entry_point_naming_something_else_is_refused(importable: Path) -> None:
    write(importable, "pkg_nodes", PACKAGE + "\nNUMBER = 3\nWORDS = ['x']\n")
    dist_info(importable, "number = pkg_nodes:NUMBER")
    with pytest.raises(NodeSourceError, match="entry point 'number'"):
        load_registry()


def test_an_entry_point_listing_a_plain_function_is_refused(importable: Path) -> None:
    write(importable, "pkg_nodes", PACKAGE + "\ndef plain() -> None: ...\nMIXED = [a, plain]\n")
    dist_info(importable, "mixed = pkg_nodes:MIXED")
    with pytest.raises(NodeSourceError, match="not a node"):
        load_registry()


def test_an_entry_point_and_a_module_with_one_node_name_both(importable: Path) -> None:
    write(importable, "pkg_nodes", PACKAGE)
    write(
        importable,
        "local_nodes",
        """
        from noderun import node

        @node("pkg.A", inline=True)
        def a() -> int:
            return 10
        """,
    )
    dist_info(importable, "all = pkg_nodes")
    with pytest.raises(DuplicateNodeType, match=r"pkg_nodes.*local_nodes"):
        load_registry(["local_nodes"])


def test_registry_add_accepts_an_origin() -> None:
    registry = Registry()
    registry.add(DEBUG_NODES[0], origin="somewhere")
    assert registry.origin(DEBUG_NODES[0].node_type) == "somewhere"
