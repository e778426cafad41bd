"""``noderun serve``: start the server. Flags come from the settings' own fields.
``noderun schema [--asyncapi | --openapi]``: print the published schemas.

Exit statuses: 0 after a clean stop (SIGINT/SIGTERM, drained); 2 when a setting is
unusable (bad value, unknown node module, taken port, unwritable store path); 3 when
a dependency is unreachable (the store's database). Start-up errors are one line on
stderr, no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from noderun.server.lifecycle import CONFIG_ERROR, StartupError
from noderun.server.logging import configure_logging
from noderun.server.settings import (
    CONFIG_VARIABLE,
    SettingError,
    Settings,
    SettingSource,
    flag_of,
    load_settings,
    variable_of,
)
from noderun.server.version import VERSION

__all__ = ["build_parser", "main", "settings_from"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noderun", description="NodeTool-compatible node server")
    parser.add_argument("--version", action="version", version=f"noderun {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="start the server",
        description="Start the server. Every flag is also a NODERUN_* variable; "
        "flags override variables, which override --config, which overrides the defaults.",
    )
    for field in dataclasses.fields(Settings):
        source: SettingSource | None = field.metadata.get("noderun")
        if source is None:
            continue
        flags = [flag_of(field.name)]
        if source.flag is not None:
            flags.insert(0, source.flag)
        help_text = f"{source.help} ({variable_of(field.name)})".replace("%", "%%")
        if source.metavar is None:
            serve.add_argument(
                *flags, dest=field.name, action="store_true", default=None, help=help_text
            )
        elif source.repeatable:
            serve.add_argument(
                *flags, dest=field.name, action="append", metavar=source.metavar, help=help_text
            )
        else:
            serve.add_argument(*flags, dest=field.name, metavar=source.metavar, help=help_text)
    serve.add_argument(
        "--config", metavar="FILE", help=f"TOML file of settings ({CONFIG_VARIABLE})"
    )
    schema = commands.add_parser(
        "schema",
        help="print the /ws protocol's schema or the HTTP API's",
        description="Print a JSON Schema (2020-12) of every client and server frame of /ws, "
        "generated from the protocol's types; --asyncapi prints an AsyncAPI 3 document of "
        "/ws instead, --openapi an OpenAPI 3.1 document of the HTTP routes.",
    )
    kinds = schema.add_mutually_exclusive_group()
    kinds.add_argument(
        "--asyncapi", action="store_true", help="an AsyncAPI 3.0 document of the /ws channel"
    )
    kinds.add_argument(
        "--openapi", action="store_true", help="an OpenAPI 3.1 document of the HTTP routes"
    )
    return parser


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """Flags, then ``NODERUN_*`` variables, then ``--config``, then defaults."""
    flags = {field.name: getattr(args, field.name, None) for field in dataclasses.fields(Settings)}
    return load_settings(flags, env, getattr(args, "config", None))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schema":
        return _print_schema(asyncapi=args.asyncapi, openapi=args.openapi)
    try:
        settings = settings_from(args)
    except SettingError as exc:
        return _fail(str(exc), CONFIG_ERROR)
    configure_logging(settings.log_level)
    # `noderun serve --nodes mymodule` finds mymodule.py where it is started, as
    # `python -m` and uvicorn would.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from noderun.server.serve import serve
    from noderun.server.supervisor import supervise

    try:
        if settings.workers > 1:
            return supervise(settings)
        serve(settings)
    except StartupError as exc:
        return _fail(str(exc), exc.exit_status)
    return 0


def _print_schema(*, asyncapi: bool, openapi: bool) -> int:
    import json

    from noderun.protocol import schema

    if openapi:
        from noderun.server.openapi import openapi as openapi_document

        document = openapi_document(VERSION)
    else:
        document = schema.asyncapi(VERSION) if asyncapi else schema.json_schema()
    print(json.dumps(document, indent=2, sort_keys=False))
    return 0


def _fail(message: str, status: int) -> int:
    print(f"noderun: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
