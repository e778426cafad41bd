"""The workers' nodes as noderun node specs.

``discover`` is lossy (property types flattened to a name, no bounds, no
layout hints); a node package's ``nodetool/package_metadata/<name>.json``,
written by NodeTool's package scanner, has the full ``NodeMetadata``. So a
node's metadata is taken from that file when the package ships one, and
rebuilt from ``discover`` otherwise. Either way the spec's properties are
untyped here: the worker validates them with the node's own pydantic model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from noderun.assets import AssetStore
from noderun.nodetool.pool import WorkerPool
from noderun.nodetool.remote import RemoteNodeSpec, remote_spec

__all__ = ["load_package_metadata", "log_load_errors", "node_specs"]

log = structlog.get_logger(__name__)

#: Run in the workers' interpreter: where ``nodetool/package_metadata/*.json`` files are,
#: found through the ``nodetool`` namespace package without importing any of it.
_FIND_METADATA = """
import importlib.util, json, os
spec = importlib.util.find_spec("nodetool")
found = []
for base in (spec.submodule_search_locations or []) if spec else []:
    folder = os.path.join(base, "package_metadata")
    if os.path.isdir(folder):
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
        found += [os.path.join(folder, n) for n in names]
print(json.dumps(found))
"""

_SIMPLE_TYPES = frozenset(
    {"str", "int", "float", "bool", "bytes", "list", "dict", "any", "Any", "none", "enum"}
)


async def load_package_metadata(
    python: str, env: Mapping[str, str], deadline: float
) -> dict[str, dict[str, Any]]:
    """Node type → ``NodeMetadata`` from every installed package's metadata file.

    Best effort: a file that cannot be found or read costs only its richer
    metadata (logged), never the start-up.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            python,
            "-c",
            _FIND_METADATA,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
        )
        out, _err = await asyncio.wait_for(process.communicate(), deadline)
        paths = json.loads(out) if process.returncode == 0 else []
    except (OSError, TimeoutError, ValueError) as exc:
        log.warning("nodetool.package_metadata_unavailable", error=str(exc))
        return {}
    # Small files, read once at start-up: not worth a thread.
    return _read_metadata(paths)


def _read_metadata(paths: Iterable[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            package = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            log.warning("nodetool.package_metadata_unreadable", path=path, error=str(exc))
            continue
        for meta in package.get("nodes") or ():
            if isinstance(meta, dict) and isinstance(meta.get("node_type"), str):
                found[meta["node_type"]] = meta
    return found


def node_specs(
    pool: WorkerPool,
    discovered: Iterable[Mapping[str, Any]],
    package_metadata: Mapping[str, Mapping[str, Any]],
    secrets: Callable[[Iterable[str]], dict[str, str]],
    assets: AssetStore | None = None,
) -> list[RemoteNodeSpec]:
    """A spec per discovered node, its metadata from the package file where there is one."""
    specs = []
    for node in discovered:
        node_type = node.get("node_type")
        if not isinstance(node_type, str) or "." not in node_type:
            continue
        rich = package_metadata.get(node_type)
        meta = _from_package(rich, node) if rich is not None else _from_discover(node)
        specs.append(remote_spec(pool, meta, secrets, assets))
    return specs


def log_load_errors(errors: Iterable[Mapping[str, Any]]) -> None:
    """One warning per node package whose modules failed to load in the worker."""
    by_package: dict[str, list[str]] = {}
    for error in errors:
        module = str(error.get("module") or "?")
        package = ".".join(module.split(".")[:3])  # nodetool.nodes.<namespace>
        by_package.setdefault(package, []).append(
            f"{module}: {error.get('error_type', 'Error')}: {error.get('error', '')}"
        )
    for package, problems in by_package.items():
        log.warning("nodetool.package_load_errors", package=package, errors=problems)


def _from_package(rich: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(rich)
    # What only a live worker knows wins over the file (the file may be older).
    for key in ("is_streaming_output", "required_settings", "requires_vram_gb"):
        if key in node:
            meta[key] = node[key]
    return _normalized(meta)


def _from_discover(node: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(node)
    meta.setdefault("layout", "default")
    return _normalized(meta)


def _normalized(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with every §6.2 key present and typed (NodeTool's extra keys kept)."""
    node_type = str(meta["node_type"])
    meta["title"] = meta.get("title") or node_type.rpartition(".")[2]
    meta["description"] = meta.get("description") or ""
    meta["namespace"] = node_type.rpartition(".")[0]
    meta["is_streaming_output"] = bool(meta.get("is_streaming_output"))
    meta["properties"] = [
        {
            **prop,
            "type": _type(prop.get("type")),
            "default": prop.get("default"),
            "description": prop.get("description") or "",
        }
        for prop in meta.get("properties") or ()
        if isinstance(prop, dict) and isinstance(prop.get("name"), str)
    ]
    meta["outputs"] = [
        {**output, "type": _type(output.get("type"))}
        for output in meta.get("outputs") or ()
        if isinstance(output, dict) and isinstance(output.get("name"), str)
    ]
    return meta


def _type(raw: object) -> dict[str, Any]:
    """A type as ``discover`` (``{"type": "str"}``) or a metadata file has it → the §6.2 shape."""
    if not isinstance(raw, dict):
        return {"type": "any", "optional": False, "type_args": []}
    name = str(raw.get("type") or "any")
    return {
        **raw,
        "type": "any" if name == "Any" else name,
        "optional": bool(raw.get("optional", False)),
        "type_args": [_type(arg) for arg in raw.get("type_args") or ()],
    }
