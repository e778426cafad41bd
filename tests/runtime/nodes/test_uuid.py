"""lib.uuid: each node against NodeTool's semantics (Python's uuid), and a real server."""

from __future__ import annotations

import uuid

import pytest

from noderun.runtime.nodes import uuid as nodes
from tests.runtime.nodes.support import failure, outputs, run_graph
from tests.server.helpers import ServerHandle
from tests.support.graphs import edge, nd

SAMPLE = "12345678-1234-5678-1234-567812345678"


def test_generate_uuid4_is_random_version_4() -> None:
    first, second = nodes.generate_uuid4(), nodes.generate_uuid4()
    assert uuid.UUID(first).version == 4 and first != second


def test_generate_uuid1_is_version_1() -> None:
    assert uuid.UUID(nodes.generate_uuid1()).version == 1


def test_generate_uuid3_and_uuid5_are_deterministic() -> None:
    assert nodes.generate_uuid3(name="python.org") == str(
        uuid.uuid3(uuid.NAMESPACE_DNS, "python.org")
    )
    assert nodes.generate_uuid5(namespace="URL", name="x") == str(
        uuid.uuid5(uuid.NAMESPACE_URL, "x")
    )
    assert nodes.generate_uuid5(namespace=SAMPLE, name="x") == str(
        uuid.uuid5(uuid.UUID(SAMPLE), "x")
    )
    assert nodes.generate_uuid3(namespace="oid") == str(uuid.uuid3(uuid.NAMESPACE_OID, ""))
    with pytest.raises(ValueError, match="invalid namespace 'nope'"):
        nodes.generate_uuid5(namespace="nope", name="x")


def test_parse_uuid() -> None:
    version5 = "886313e1-3b8a-5372-9b90-0c9aee199e5d"
    parsed = nodes.parse_uuid(uuid_string=version5.upper())
    assert parsed == {
        "uuid": version5,
        "version": 5,
        "variant": uuid.RFC_4122,
        "hex": version5.replace("-", ""),
        "int": str(uuid.UUID(version5).int),
        "is_valid": True,
    }
    assert nodes.parse_uuid(uuid_string=SAMPLE)["version"] is None
    invalid = nodes.parse_uuid(uuid_string="nope")
    assert invalid["is_valid"] is False and invalid["uuid"] == "nope" and invalid["error"]


def test_format_uuid() -> None:
    value = uuid.UUID(SAMPLE)
    assert nodes.format_uuid(uuid_string=SAMPLE.replace("-", "")) == SAMPLE
    assert nodes.format_uuid(uuid_string=SAMPLE, format="hex") == value.hex
    assert nodes.format_uuid(uuid_string=SAMPLE, format="urn") == "urn:uuid:" + SAMPLE
    assert nodes.format_uuid(uuid_string=SAMPLE, format="int") == str(value.int)
    assert nodes.format_uuid(uuid_string=SAMPLE, format="bytes_hex") == value.bytes.hex()
    with pytest.raises(ValueError, match="invalid UUID string ''"):
        nodes.format_uuid()


def test_is_valid_uuid() -> None:
    assert nodes.is_valid_uuid(uuid_string=SAMPLE) is True
    assert nodes.is_valid_uuid(uuid_string="{" + SAMPLE + "}") is True
    assert nodes.is_valid_uuid(uuid_string=SAMPLE[:-1]) is False
    assert nodes.is_valid_uuid() is False


async def test_uuid_graph_over_websocket(server: ServerHandle) -> None:
    """GenerateUUID5 → FormatUUID(urn); ParseUUID's 128-bit int travels as a string."""
    terminal = await run_graph(
        server,
        nd("gen", "lib.uuid.GenerateUUID5", name="example.com"),
        nd("fmt", "lib.uuid.FormatUUID", format="urn"),
        nd("parse", "lib.uuid.ParseUUID", uuid_string=str(uuid.UUID(int=2**128 - 1))),
        edges=[edge("gen", "fmt", "uuid_string")],
    )
    found = outputs(terminal)
    assert found["fmt"] == {"output": uuid.uuid5(uuid.NAMESPACE_DNS, "example.com").urn}
    assert found["parse"]["output"]["int"] == str(2**128 - 1)


async def test_invalid_uuid_fails_the_run_naming_the_node(server: ServerHandle) -> None:
    terminal = await run_graph(server, nd("fmt", "lib.uuid.FormatUUID", uuid_string="xyz"))
    assert "invalid UUID string 'xyz'" in failure(terminal, "fmt", "lib.uuid.FormatUUID")
