"""The asset routes over real HTTP: a real uvicorn on port 0, urllib and raw sockets as clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from noderun.assets import AssetResolver, AssetStore, AssetStoreUnavailable
from noderun.server.assets_api import AssetsApi
from noderun.server.auth import Authenticator
from noderun.server.settings import Settings, load_settings
from tests.server.helpers import ServerHandle, running_server
from tests.support.timing import TIMEOUT
from tests.support.waiting import eventually, eventually_blocking

ALICE, BOB = "alice-token", "bob-token"
MiB = 1 << 20


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type", "").startswith("application/json"), self.headers
        return json.loads(self.body)


def request(
    server: ServerHandle,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    url = path if path.startswith("http://") else server.http_url + path
    req = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            reply_headers = {k.lower(): v for k, v in error.headers.items()}
            return Reply(error.code, reply_headers, error.read())


def form(
    file: bytes | None = b"",
    *,
    filename: str = "clip.bin",
    file_type: str | None = "application/octet-stream",
    meta: object = None,
    boundary: str = "noderun-test-boundary",
) -> tuple[dict[str, str], bytes]:
    """A multipart body as the SDK sends it: ``file`` with a filename, optional ``json``."""
    parts = []
    if meta is not None:
        value = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
        parts.append(b'Content-Disposition: form-data; name="json"\r\n\r\n' + value)
    if file is not None:
        head = f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        if file_type is not None:
            head += f"Content-Type: {file_type}\r\n"
        parts.append(head.encode() + b"\r\n" + file)
    data = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    data += b"--" + boundary.encode() + b"--\r\n"
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, data


def upload(
    server: ServerHandle, data: bytes, *, token: str = ALICE, path: str = "/api/assets/", **kw: Any
) -> Reply:
    headers, body = form(data, **kw)
    return request(server, "POST", path, token=token, body=body, headers=headers)


def stored_files(server: ServerHandle) -> list[str]:
    root = Path(server.settings.assets_dir)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def wait_until_no_files(server: ServerHandle) -> None:
    eventually_blocking(lambda: not stored_files(server), explain=lambda: str(stored_files(server)))


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with running_server(tokens=(ALICE, BOB)) as handle:
        yield handle


def user_of(token: str) -> str:
    user_id, _ = Authenticator([token]).check([(b"authorization", f"Bearer {token}".encode())], b"")
    assert user_id is not None
    return user_id


# -- round trip ------------------------------------------------------------------------


def test_upload_then_download_returns_the_same_bytes(server: ServerHandle) -> None:
    data = os.urandom(3 * MiB + 12345)
    reply = upload(
        server,
        data,
        filename="upload.bin",
        meta={"name": "clip.webm", "content_type": "video/webm", "metadata": {"k": 1}},
    )
    assert reply.status == 200, reply.body
    asset = reply.json()
    assert asset["name"] == "clip.webm" and asset["content_type"] == "video/webm"
    assert asset["size"] == len(data) and asset["metadata"] == {"k": 1}
    assert asset["user_id"] == user_of(ALICE) and asset["expires_at"] is None
    assert asset["get_url"] == f"{server.http_url}/api/assets/{asset['id']}/download"
    # NodeTool's asset JSON keys, every one of them.
    assert {
        "id", "user_id", "workflow_id", "parent_id", "name", "content_type", "size",
        "metadata", "created_at", "get_url", "thumb_url", "duration", "node_id", "job_id",
    } <= set(asset)  # fmt: skip
    assert asset["created_at"].endswith("Z")

    meta = request(server, "GET", f"/api/assets/{asset['id']}", token=ALICE)
    assert meta.status == 200 and meta.json() == asset

    download = request(server, "GET", asset["get_url"], token=ALICE)
    assert download.status == 200
    assert download.headers["content-type"] == "video/webm"
    assert download.headers["content-length"] == str(len(data))
    assert download.headers["x-content-type-options"] == "nosniff"
    assert hashlib.sha256(download.body).digest() == hashlib.sha256(data).digest()


def test_without_json_the_file_part_names_the_asset(server: ServerHandle) -> None:
    reply = upload(server, b"\x89PNG\r\n", filename="photo.png", file_type="image/png")
    asset = reply.json()
    assert (asset["name"], asset["content_type"], asset["size"]) == ("photo.png", "image/png", 6)
    assert asset["metadata"] is None


def test_a_bad_content_type_is_stored_as_octet_stream(server: ServerHandle) -> None:
    reply = upload(server, b"x", meta={"content_type": "text/html\r\nX-Evil: 1"})
    assert reply.json()["content_type"] == "application/octet-stream"
    reply = upload(server, b"x", file_type=None)
    assert reply.json()["content_type"] == "application/octet-stream"


def test_the_path_without_a_trailing_slash_uploads_too(server: ServerHandle) -> None:
    reply = upload(server, b"abc", path="/api/assets")
    assert reply.status == 200 and reply.json()["size"] == 3


def test_an_empty_file_is_an_asset(server: ServerHandle) -> None:
    asset = upload(server, b"").json()
    download = request(server, "GET", asset["get_url"], token=ALICE)
    assert (download.status, download.body) == (200, b"")


def test_the_resolver_reads_what_http_stored(server: ServerHandle) -> None:
    """The worker-side view: an upload's asset:// reference resolves to its bytes."""
    data = os.urandom(1000)
    asset = upload(server, data, file_type="image/png").json()
    store = AssetStore(server.settings.assets_dir, max_bytes=MiB, ttl=60.0)
    resolver = AssetResolver(store, user_of(ALICE))
    # As the SDK builds values: a temporary upload's uri, a persistent upload's get_url + id.
    for value in (
        {"type": "image", "uri": f"asset://{asset['id']}", "asset_id": None},
        {"type": "image", "uri": asset["get_url"], "asset_id": asset["id"]},
        {"type": "image", "uri": asset["get_url"], "asset_id": None},
    ):
        assert resolver.read(value) == data


# -- auth and ownership ----------------------------------------------------------------

ROUTES = [
    ("POST", "/api/assets/"),
    ("POST", "/api/sdk/v1/assets/temporary"),
    ("GET", "/api/assets/0123456789abcdef0123456789abcdef"),
    ("GET", "/api/assets/0123456789abcdef0123456789abcdef/download"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_route_needs_a_valid_token(
    server: ServerHandle, method: str, path: str, token: str | None
) -> None:
    headers, body = form(b"data")
    reply = request(
        server, method, path, token=token, body=body if method == "POST" else None, headers=headers
    )
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["detail"] in {"Missing authentication", "Invalid authentication"}
    assert not [name for name in stored_files(server) if name.startswith("incoming")]


def test_a_token_in_the_query_is_refused_as_by_the_rest_of_the_http_api(
    server: ServerHandle,
) -> None:
    asset = upload(server, b"q").json()
    reply = request(server, "GET", f"/api/assets/{asset['id']}?api_key={ALICE}")
    assert reply.status == 401


def test_another_users_asset_is_not_found(server: ServerHandle) -> None:
    asset = upload(server, b"secret", token=ALICE).json()
    for path in (f"/api/assets/{asset['id']}", asset["get_url"]):
        reply = request(server, "GET", path, token=BOB)
        assert reply.status == 404
        assert reply.json() == {"detail": "Asset not found"}
        assert request(server, "GET", path, token=ALICE).status == 200


@pytest.mark.parametrize("asset_id", ["nope", "0" * 32, "..%2Fmeta", "%2e%2e"])
def test_unknown_ids_are_not_found(server: ServerHandle, asset_id: str) -> None:
    assert request(server, "GET", f"/api/assets/{asset_id}", token=ALICE).status == 404
    assert request(server, "GET", f"/api/assets/{asset_id}/download", token=ALICE).status == 404


# -- temporary assets ------------------------------------------------------------------


def test_temporary_upload_answers_the_sdk_v1_shape(server: ServerHandle) -> None:
    data = os.urandom(2 * MiB)
    reply = upload(
        server, data, path="/api/sdk/v1/assets/temporary", filename="in.wav", file_type="audio/wav"
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert set(body) == {"version", "uri", "name", "content_type", "size", "expires_at"}
    assert body["version"] == 1 and body["uri"].startswith("asset://")
    assert (body["name"], body["content_type"], body["size"]) == ("in.wav", "audio/wav", len(data))
    asset_id = body["uri"].removeprefix("asset://")
    meta = request(server, "GET", f"/api/assets/{asset_id}", token=ALICE).json()
    assert meta["expires_at"] == body["expires_at"] and meta["size"] == len(data)
    download = request(server, "GET", meta["get_url"], token=ALICE)
    assert download.body == data
    assert request(server, "GET", f"/api/assets/{asset_id}", token=BOB).status == 404


def test_temporary_upload_errors_use_the_sdk_v1_error_shape(server: ServerHandle) -> None:
    reply = request(
        server, "POST", "/api/sdk/v1/assets/temporary", token=ALICE, body=b"{}",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert reply.status == 400
    assert reply.json() == {
        "code": "INVALID_REQUEST",
        "message": "expected a multipart/form-data body",
        "retryable": False,
        "detail": "expected a multipart/form-data body",
    }
    headers, body = form(b"x", boundary="b")
    reply = request(server, "POST", "/api/sdk/v1/assets/temporary", body=body, headers=headers)
    assert reply.status == 401 and reply.json()["code"] == "UNAUTHORIZED"


def test_a_temporary_asset_expires_and_the_sweep_deletes_it() -> None:
    ttl = 0.5
    with running_server(tokens=(ALICE,), asset_ttl=ttl) as server:
        kept = upload(server, b"kept").json()
        body = upload(server, b"short-lived", path="/api/sdk/v1/assets/temporary").json()
        asset_id = body["uri"].removeprefix("asset://")
        path = f"/api/assets/{asset_id}"
        assert request(server, "GET", path, token=ALICE).status == 200
        # Wait out the TTL itself (nothing else to wait on: expiry is the clock's).
        time.sleep(ttl)
        assert request(server, "GET", path, token=ALICE).status == 404
        assert request(server, "GET", path + "/download", token=ALICE).status == 404
        # The server's own sweep (every TTL/4) frees the disk space.
        eventually_blocking(
            lambda: not any(asset_id in name for name in stored_files(server)),
            explain=lambda: str(stored_files(server)),
        )
        assert stored_files(server) == [f"data/{kept['id']}", f"meta/{kept['id']}.json"]
        assert request(server, "GET", f"/api/assets/{kept['id']}", token=ALICE).status == 200


# -- limits and bad input --------------------------------------------------------------

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small() -> Iterator[ServerHandle]:
    """A server whose assets may be at most ``LIMIT`` bytes."""
    with running_server(tokens=(ALICE,), max_asset_bytes=LIMIT) as handle:
        yield handle


def test_the_limit_is_a_plain_attribute_for_the_capabilities(tmp_path: Path) -> None:
    settings = Settings(assets_dir=str(tmp_path), max_asset_bytes=12345)
    assert AssetsApi(settings).max_asset_bytes == 12345


@pytest.mark.parametrize("path", ["/api/assets/", "/api/sdk/v1/assets/temporary"])
def test_an_upload_at_the_limit_is_stored_one_byte_more_is_413(
    small: ServerHandle, path: str
) -> None:
    assert upload(small, b"a" * LIMIT, path=path).status == 200
    reply = upload(small, b"a" * (LIMIT + 1), path=path)
    assert reply.status == 413
    assert reply.json()["detail"] == f"Upload exceeds the configured {LIMIT} byte limit"
    assert not [name for name in stored_files(small) if name.startswith("incoming")]


def test_an_oversize_chunked_upload_is_413_and_leaves_nothing(small: ServerHandle) -> None:
    """No Content-Length: the limit is enforced on the bytes as they arrive, and the rest
    of the body (more than socket buffers hold) is read and dropped so the client, still
    sending, gets the 413 rather than a reset."""
    before = stored_files(small)
    headers, body = form(os.urandom(8 * MiB))
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
    reply = request(
        small, "POST", "/api/assets/", token=ALICE, body=chunks,
        headers={**headers, "Transfer-Encoding": "chunked"},
    )  # fmt: skip
    assert reply.status == 413
    assert reply.json()["detail"].startswith("Upload exceeds")
    assert stored_files(small) == before


def raw_exchange(server: ServerHandle, head: bytes, body: bytes = b"") -> bytes:
    """Send ``head`` (and ``body``) on a fresh socket; everything the server answers."""

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head + body)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(65536), TIMEOUT)
        finally:
            writer.close()
            await writer.wait_closed()

    return asyncio.run(exchange())


def test_a_declared_oversize_body_is_refused_before_it_is_sent(small: ServerHandle) -> None:
    """``Expect: 100-continue`` with too large a Content-Length: 413, never 100."""
    head = (
        f"POST /api/assets/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {50 * MiB}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    answer = raw_exchange(small, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    assert b"exceeds the configured" in answer


def test_a_client_that_goes_away_mid_upload_leaves_nothing(small: ServerHandle) -> None:
    before = stored_files(small)
    headers, body = form(os.urandom(LIMIT // 2))

    async def abandon() -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", small.port)
        writer.write(
            (
                f"POST /api/assets/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n"
                f"Content-Type: {headers['Content-Type']}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body[: len(body) // 2]
        )
        await writer.drain()
        # Let the server start the upload (its file appears), then hang up.
        await eventually(lambda: any(n.startswith("incoming") for n in stored_files(small)))
        writer.close()
        await writer.wait_closed()

    asyncio.run(abandon())
    eventually_blocking(
        lambda: stored_files(small) == before, explain=lambda: str(stored_files(small))
    )


def multipart(*parts: bytes, boundary: str = "bnd", close: bool = True) -> bytes:
    data = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return data + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


FILE = b'Content-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n' + b"z" * 5000
MALFORMED = {
    "not multipart": ("application/json", b'{"file": "x"}'),
    "no boundary": ("multipart/form-data", multipart(FILE)),
    "garbage": ("multipart/form-data; boundary=bnd", b"this is not a multipart body"),
    "truncated": ("multipart/form-data; boundary=bnd", multipart(FILE, close=False)),
    "no file part": (
        "multipart/form-data; boundary=bnd",
        multipart(b'Content-Disposition: form-data; name="json"\r\n\r\n{}'),
    ),
    "two file parts": ("multipart/form-data; boundary=bnd", multipart(FILE, FILE)),
    "file under another name": (
        "multipart/form-data; boundary=bnd",
        multipart(b'Content-Disposition: form-data; name="upload"; filename="a"\r\n\r\nx'),
    ),
    "json not json": (
        "multipart/form-data; boundary=bnd",
        multipart(FILE, b'Content-Disposition: form-data; name="json"\r\n\r\n{nope'),
    ),
    "json not an object": (
        "multipart/form-data; boundary=bnd",
        multipart(FILE, b'Content-Disposition: form-data; name="json"\r\n\r\n[1]'),
    ),
    "part without disposition": (
        "multipart/form-data; boundary=bnd",
        multipart(b"Content-Type: text/plain\r\n\r\nx"),
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_uploads_are_400_with_a_json_reason(small: ServerHandle, case: str) -> None:
    before = stored_files(small)
    content_type, body = MALFORMED[case]
    reply = request(
        small, "POST", "/api/assets/", token=ALICE, body=body,
        headers={"Content-Type": content_type},
    )  # fmt: skip
    assert reply.status == 400
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10
    assert stored_files(small) == before


# -- start-up --------------------------------------------------------------------------


def test_an_unusable_assets_dir_stops_start_up_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = blocker / "assets"
    with pytest.raises(AssetStoreUnavailable, match=str(bad)):
        asyncio.run(AssetsApi(Settings(assets_dir=str(bad))).start())
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODERUN_")}
    env["NODERUN_ASSETS_DIR"] = str(bad)
    result = subprocess.run(
        [sys.executable, "-m", "noderun", "serve", "--store", "none", "--port", "0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT * 4,
    )  # fmt: skip
    assert result.returncode != 0  # uvicorn exits 3 when start-up fails
    assert str(bad) in result.stderr + result.stdout


def test_the_assets_dir_is_created_at_start(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "assets" / str(uuid.uuid4())
    with running_server(assets_dir=str(target)):
        assert {p.name for p in target.iterdir()} == {"data", "meta", "incoming", "temporary"}


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    where = str(tmp_path / "x")
    env = {"NODERUN_ASSETS_DIR": where, "NODERUN_ASSET_TTL": "2.5", "NODERUN_MAX_ASSET_BYTES": "7"}
    found = load_settings({}, env)
    assert (found.assets_dir, found.asset_ttl, found.max_asset_bytes) == (where, 2.5, 7)
    assert Settings().assets_dir == "./noderun-assets"
    assert (Settings().asset_ttl, Settings().max_asset_bytes) == (3600.0, 100 * MiB)
