"""UUID nodes under NodeTool's names (``lib.uuid.*``); UUIDs travel as strings.

``ParseUUID`` gives the UUID's 128-bit integer as a decimal string (NodeTool:
an int), because MessagePack integers stop at 64 bits.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from noderun.runtime.node import node

_NAMESPACES = {
    "dns": uuid.NAMESPACE_DNS,
    "url": uuid.NAMESPACE_URL,
    "oid": uuid.NAMESPACE_OID,
    "x500": uuid.NAMESPACE_X500,
}

Namespace = Annotated[
    str, msgspec.Meta(description="Namespace (dns, url, oid, x500, or a UUID string)")
]
Name = Annotated[str, msgspec.Meta(description="Name to generate UUID from")]


def _namespace(namespace: str) -> uuid.UUID:
    known = _NAMESPACES.get(namespace.lower())
    if known is not None:
        return known
    try:
        return uuid.UUID(namespace)
    except ValueError:
        raise ValueError(
            f"invalid namespace {namespace!r}: use dns, url, oid, x500 or a UUID"
        ) from None


def _parse(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError(f"invalid UUID string {text!r}") from None


@node("lib.uuid.GenerateUUID4", title="Generate UUID4", inline=True)
def generate_uuid4() -> str:
    """Generate a random UUID (version 4)."""
    return str(uuid.uuid4())


@node("lib.uuid.GenerateUUID1", title="Generate UUID1", inline=True)
def generate_uuid1() -> str:
    """Generate a time-based UUID (version 1)."""
    return str(uuid.uuid1())


@node("lib.uuid.GenerateUUID3", title="Generate UUID3", inline=True)
def generate_uuid3(namespace: Namespace = "dns", name: Name = "") -> str:
    """Generate a name-based UUID using MD5 (version 3)."""
    return str(uuid.uuid3(_namespace(namespace), name))


@node("lib.uuid.GenerateUUID5", title="Generate UUID5", inline=True)
def generate_uuid5(namespace: Namespace = "dns", name: Name = "") -> str:
    """Generate a name-based UUID using SHA-1 (version 5)."""
    return str(uuid.uuid5(_namespace(namespace), name))


@node("lib.uuid.ParseUUID", title="Parse UUID", inline=True)
def parse_uuid(
    uuid_string: Annotated[str, msgspec.Meta(description="UUID string to parse")] = "",
) -> dict[str, object]:
    """Parse a UUID string: ``{uuid, version, variant, hex, int, is_valid: true}``, or
    ``{uuid, is_valid: false, error}`` when it is none (not a failure)."""
    try:
        parsed = uuid.UUID(uuid_string)
    except ValueError as exc:
        return {"uuid": uuid_string, "is_valid": False, "error": str(exc)}
    return {
        "uuid": str(parsed),
        "version": parsed.version,
        "variant": parsed.variant,
        "hex": parsed.hex,
        "int": str(parsed.int),
        "is_valid": True,
    }


@node("lib.uuid.FormatUUID", title="Format UUID", inline=True)
def format_uuid(
    uuid_string: Annotated[str, msgspec.Meta(description="UUID string to format")] = "",
    format: Annotated[
        Literal["standard", "hex", "urn", "int", "bytes_hex"],
        msgspec.Meta(description="Output format (standard, hex, urn, int, bytes_hex)"),
    ] = "standard",
) -> str:
    """Format a UUID string in another representation; an invalid UUID fails."""
    parsed = _parse(uuid_string)
    match format:
        case "standard":
            return str(parsed)
        case "hex":
            return parsed.hex
        case "urn":
            return parsed.urn
        case "int":
            return str(parsed.int)
        case "bytes_hex":
            return parsed.bytes.hex()


@node("lib.uuid.IsValidUUID", title="Is Valid UUID", inline=True)
def is_valid_uuid(
    uuid_string: Annotated[str, msgspec.Meta(description="String to check")] = "",
) -> bool:
    """Check if a string is a valid UUID."""
    try:
        uuid.UUID(uuid_string)
    except ValueError:
        return False
    return True


NODES = [
    generate_uuid4,
    generate_uuid1,
    generate_uuid3,
    generate_uuid5,
    parse_uuid,
    format_uuid,
    is_valid_uuid,
]
