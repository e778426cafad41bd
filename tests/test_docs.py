"""``docs/protocol.md`` names everything the server speaks: every client command and RPC, every
server frame type, every HTTP route and every error code.

Each list is read from the code itself (the command table, the server structs, the app's
route table, the error codes found in the source), so adding any of them without documenting
it fails here.
"""

from __future__ import annotations

import ast
import re
import typing
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from noderun.contract import Refusal, RunStatus
from noderun.protocol import client
from noderun.protocol.schema import server_frames
from noderun.server.app import create_app
from noderun.server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "protocol.md"
PACKAGE = ROOT / "noderun"
#: Where the codes that reach a client are made (packages, or modules without ``.py``).
#: ``nodetool/`` speaks to worker processes, not to clients: its failures reach clients as
#: run errors made in ``runtime/``.
CODE_LAYERS = ("contract", "protocol", "server", "runtime", "persistence", "assets")
#: Codes the scan must find: if it finds fewer, it no longer sees where codes are made.
KNOWN_CODES = frozenset(
    {
        "invalid_frame",
        "invalid_message",
        "invalid_command",
        "input_rejected",
        "properties_rejected",
        "job_already_running",
        "NOT_FOUND",
        "UPLOAD_TOO_LARGE",
    }
)


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _section(number: int) -> str:
    """The text of ``## <number>. …`` up to the next ``## `` heading."""
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", _doc(), re.MULTILINE | re.DOTALL)
    assert match, f"docs/protocol.md has no section '## {number}.'"
    return match.group(0)


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def _row_names(text: str, name: str) -> bool:
    """Some table row of ``text`` starts with the cell ```name```."""
    return any(row.startswith(f"| `{name}` |") for row in _table_rows(text))


def _sources(layers: tuple[str, ...]) -> Iterator[Path]:
    for layer in layers:
        module = PACKAGE / f"{layer}.py"
        if module.is_file():
            yield module
        else:
            yield from sorted((PACKAGE / layer).rglob("*.py"))


def _constant(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


# -- commands -------------------------------------------------------------------------


def _rpc_commands() -> list[str]:
    return [frame.command for frame in typing.get_args(client.SdkFrame)]


@pytest.mark.parametrize("command", sorted(client.COMMANDS))
def test_every_command_has_a_row_in_the_command_table(command: str) -> None:
    assert _row_names(_section(2), command), f"command {command!r} is not in the table of §2"


@pytest.mark.parametrize("command", sorted(_rpc_commands()))
def test_every_rpc_has_a_row_in_the_rpc_table(command: str) -> None:
    assert command in client.COMMANDS, f"RPC {command!r} is not a command"
    assert _row_names(_section(6), command), f"RPC {command!r} is not in the table of §6"


# -- server frames --------------------------------------------------------------------


def _tag(struct: type[msgspec.Struct]) -> str | None:
    tag = struct.__struct_config__.tag
    return tag if isinstance(tag, str) else None


@pytest.mark.parametrize("struct", server_frames(), ids=lambda struct: struct.__name__)
def test_every_server_struct_is_named_with_its_type(struct: type[msgspec.Struct]) -> None:
    """Its wire ``type`` is described, and the schema section maps its ``$defs`` name."""
    tag = _tag(struct)
    if tag is not None:
        assert f"`{tag}`" in _doc(), f"frame type {tag!r} ({struct.__name__}) is not described"
    assert _row_names(_section(11), struct.__name__), (
        f"{struct.__name__} has no row in the schema table of §11"
    )


#: Keys that make a map with a ``type`` a frame (not, say, a JSON schema or an ASGI message).
_FRAME_KEYS = frozenset({"request_id", "job_id", "error", "message", "command"})


def _plain_frame_types() -> set[str]:
    """``type`` values of frames built as plain maps (``{"type": "rpc_response", …}``)."""
    found: set[str] = set()
    for path in _sources(("protocol", "server")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Dict):
                continue
            keys = {_constant(key) for key in node.keys}
            if not keys & _FRAME_KEYS:
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if _constant(key) == "type" and isinstance(_constant(value), str):
                    found.add(str(_constant(value)))
    return found


def test_no_frame_is_built_as_a_plain_map() -> None:
    """Every frame is a struct of protocol/server.py (and so in the schema of §11)."""
    assert _plain_frame_types() == set()


# -- HTTP routes ----------------------------------------------------------------------


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """``(path, methods)`` of every route, mounts walked; a WebSocket route's method is GET."""
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(list(route.routes), prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            yield prefix + route.path, ["GET"]
        elif isinstance(route, Route):
            methods = sorted(set(route.methods or {"GET"}) - {"HEAD"})
            yield prefix + route.path, methods
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")


def _app_routes() -> list[tuple[str, list[str]]]:
    return list(_routes(create_app(Settings(store="none")).routes))


def test_the_route_table_is_read() -> None:
    paths = [path for path, _methods in _app_routes()]
    assert "/ws" in paths and "/api/health" in paths


@pytest.mark.parametrize("route", _app_routes(), ids=lambda route: route[0])
def test_every_route_has_a_row_in_the_http_table(route: tuple[str, list[str]]) -> None:
    path, methods = route
    rows = [row for row in _table_rows(_section(8)) if f"| `{path}` |" in row]
    assert rows, f"route {path} has no row in the table of §8"
    for method in methods:
        assert any(row.startswith(f"| `{method}` |") for row in rows), (
            f"route {method} {path} has no row in the table of §8"
        )


# -- error codes ----------------------------------------------------------------------


#: Calls whose positional argument at that index is an error code. Besides these, any call
#: whose first argument is an HTTP error status takes a code next: ``ApiError(404, "NOT_FOUND")``.
_CODE_ARGUMENTS = {"error_frame": 0, "StartRefused": 0}
#: Keyword arguments, map keys, struct fields and parameters that hold a code or an error.
_CODE_NAMES = frozenset({"code", "error"})


def _string_enums(paths: list[Path]) -> dict[str, dict[str, str]]:
    """``class Refusal(enum.StrEnum): SERVER_BUSY = "server_busy"`` → class → member → value."""
    enums: dict[str, dict[str, str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {ast.unparse(base) for base in node.bases}
            if not bases & {"enum.StrEnum", "StrEnum"}:
                continue
            members = enums.setdefault(node.name, {})
            for statement in node.body:
                if isinstance(statement, ast.Assign) and isinstance(
                    _constant(statement.value), str
                ):
                    for target in statement.targets:
                        if isinstance(target, ast.Name):
                            members[target.id] = str(_constant(statement.value))
    return enums


class _CodeFinder(ast.NodeVisitor):
    """String constants that reach a client as an error code or error text, in one module."""

    def __init__(self, module: ast.Module, enums: dict[str, dict[str, str]]) -> None:
        self.found: set[str] = set()
        self._enums = enums
        # Module-level ``NAME = "text"``, so ``error_frame(_NOT_FOUND, …)`` is resolved.
        self._names: dict[str, str] = {}
        for statement in module.body:
            if isinstance(statement, ast.Assign | ast.AnnAssign):
                targets = (
                    statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                )
                value = _constant(statement.value)
                for target in targets:
                    if isinstance(target, ast.Name) and isinstance(value, str):
                        self._names[target.id] = value

    def _add(self, node: ast.AST | None) -> None:
        if isinstance(node, ast.IfExp):
            self._add(node.body)
            self._add(node.orelse)
        elif isinstance(node, ast.Name) and node.id in self._names:
            self.found.add(self._names[node.id])
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.attr in self._enums.get(node.value.id, {})
        ):
            # ``Refusal.SERVER_BUSY``: a member of a string enum of codes.
            self.found.add(self._enums[node.value.id][node.attr])
        elif isinstance(_constant(node), str):
            self.found.add(str(_constant(node)))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        index = _CODE_ARGUMENTS.get(str(name))
        if index is not None and len(node.args) > index:
            self._add(node.args[index])
        status = _constant(node.args[0]) if node.args else None
        if isinstance(status, int) and 400 <= status < 600 and len(node.args) > 1:
            self._add(node.args[1])
        for keyword in node.keywords:
            if keyword.arg in _CODE_NAMES:
                self._add(keyword.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if _constant(key) in _CODE_NAMES:
                self._add(value)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        # ``_RPC_CODES = {400: "invalid_input", …}``: a table of codes.
        table = any(isinstance(t, ast.Name) and t.id.endswith("_CODES") for t in node.targets)
        if table and isinstance(node.value, ast.Dict):
            for value in node.value.values:
                self._add(value)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        # A reply struct with a fixed code: ``error: str = "invalid_command"``.
        for statement in node.body:
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and statement.target.id in _CODE_NAMES
            ):
                self._add(statement.value)
        self.generic_visit(node)

    def _defaults(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # ``def _job_not_found(…, error: str = "job not found")``.
        arguments = node.args
        positional = [*arguments.posonlyargs, *arguments.args]
        for argument, default in zip(
            positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True
        ):
            if argument.arg in _CODE_NAMES:
                self._add(default)
        for argument, kw_default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
            if argument.arg in _CODE_NAMES:
                self._add(kw_default)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._defaults(node)
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._defaults(node)
        self.generic_visit(node)


def _error_codes() -> dict[str, list[str]]:
    """Code → the modules that make it."""
    codes: dict[str, list[str]] = {}
    paths = list(_sources(CODE_LAYERS))
    enums = _string_enums(paths)
    for path in paths:
        module = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        finder = _CodeFinder(module, enums)
        finder.visit(module)
        for code in finder.found:
            codes.setdefault(code, []).append(str(path.relative_to(ROOT)))
    return codes


def test_the_error_code_scan_sees_the_codes() -> None:
    missing = KNOWN_CODES - set(_error_codes())
    assert not missing, f"the scan no longer finds {sorted(missing)}: update _CodeFinder"


@pytest.mark.parametrize("code", sorted(_error_codes()))
def test_every_error_code_is_in_the_error_table(code: str) -> None:
    assert _row_names(_section(9), code) or f"`{code}`" in _section(9), (
        f"error code {code!r} (made in {', '.join(_error_codes()[code])}) is not in §9"
    )


@pytest.mark.parametrize("refusal", list(Refusal), ids=str)
def test_every_refusal_of_a_run_is_in_the_error_table(refusal: Refusal) -> None:
    assert f"`{refusal.value}`" in _section(9), f"refusal {refusal.value!r} is not in §9"


@pytest.mark.parametrize("status", list(RunStatus), ids=str)
def test_every_run_status_is_described(status: RunStatus) -> None:
    assert f"`{status.value}`" in _section(3), f"run status {status.value!r} is not in §3"
