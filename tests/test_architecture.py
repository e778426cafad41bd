"""Imports point one way (STYLE.md): server -> runtime, persistence -> protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "noderun"

#: subpackage -> the noderun subpackages it may import.
ALLOWED = {
    "protocol": set(),
    "runtime": {"protocol"},
    "persistence": {"protocol"},
    "nodetool": {"protocol", "runtime"},
    "server": {"protocol", "runtime", "persistence", "nodetool"},
}

THIRD_PARTY_IN_PROTOCOL = {"msgspec"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "noderun" and len(parts) > 1:
                target = parts[1]
                assert target == layer or target in ALLOWED[layer], f"{path}: imports {name}"


def test_protocol_imports_only_stdlib_and_msgspec() -> None:
    import sys

    for path in sorted((PACKAGE / "protocol").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in {"noderun", "__future__"}:
                continue
            assert top in sys.stdlib_module_names or top in THIRD_PARTY_IN_PROTOCOL, (
                f"{path}: imports {name}"
            )
