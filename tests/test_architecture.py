"""Imports point one way (STYLE.md): server -> runtime, persistence -> contract -> protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "noderun"

#: subpackage (or top-level module) -> the noderun subpackages and modules it may import.
#: ``contract`` is the one module runtime and persistence share: neither imports the other.
ALLOWED = {
    "protocol": set(),
    "contract": {"protocol"},
    "runtime": {"protocol", "contract"},
    "persistence": {"protocol", "contract"},
    "assets": set(),
    # nodetool may resolve asset:// references in node values (noderun.assets).
    "nodetool": {"protocol", "runtime", "assets"},
    "server": {"protocol", "contract", "runtime", "persistence", "nodetool", "assets"},
}

THIRD_PARTY_IN_PROTOCOL = {"msgspec"}


def _layer_files(layer: str) -> list[Path]:
    module = PACKAGE / f"{layer}.py"
    return [module] if module.exists() else sorted((PACKAGE / layer).rglob("*.py"))


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
    files = _layer_files(layer)
    assert files, f"no module or package {layer!r}"
    for path in files:
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "noderun" and len(parts) > 1:
                target = parts[1]
                assert target == layer or target in ALLOWED[layer], f"{path}: imports {name}"


@pytest.mark.parametrize("layer", ["protocol", "contract"])
def test_layer_imports_only_stdlib_and_msgspec(layer: str) -> None:
    import sys

    for path in _layer_files(layer):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in {"noderun", "__future__"}:
                continue
            assert top in sys.stdlib_module_names or top in THIRD_PARTY_IN_PROTOCOL, (
                f"{path}: imports {name}"
            )
