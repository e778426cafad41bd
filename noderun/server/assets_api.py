"""HTTP routes of the asset store, beside ``/ws`` on the same port and tokens.

NodeTool's REST shapes (``POST /api/assets/``, ``GET /api/assets/{id}``,
``GET /api/assets/{id}/download``, errors ``{"detail": …}``) and the SDK v1 temporary
upload (``POST /api/sdk/v1/assets/temporary``, errors ``{"code", "message",
"retryable", "detail"}``), which the C# SDK uses for media inputs over its inline
limit.

Uploads are parsed while they arrive and written to disk in batches from a worker
thread, so neither a whole body nor a whole file is ever held in memory; the size limit
is enforced on the bytes received, and a refused or broken upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import msgspec
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from noderun.assets import (
    AssetRecord,
    AssetStore,
    AssetStoreUnavailable,
    AssetTooLarge,
    FormError,
    Upload,
    asset_uri,
)
from noderun.assets.form import (
    FormEnded,
    FormReader,
    PartData,
    PartEnded,
    PartStarted,
    boundary_of,
)
from noderun.assets.sweeper import run_sweeper, sweep_interval
from noderun.server.answers import AssetAnswer, RestError, TemporaryAsset, UploadRefusal
from noderun.server.auth import Authenticator
from noderun.server.settings import Settings

__all__ = ["AssetsApi"]

log = structlog.get_logger(__name__)

#: Bytes gathered before one write to disk (one thread hop per batch, not per chunk).
_WRITE_BATCH = 1 << 20
#: Room for boundaries, part headers and the ``json`` field on top of the file itself:
#: a declared body larger than the limit plus this is refused before it is read.
_MULTIPART_SLACK = 2 << 20
#: The ``json`` metadata field's largest size (NodeTool's is the same).
_FIELD_LIMIT = 1 << 20
#: After an upload is refused mid-body, up to this much more is read and dropped so the
#: client, still sending, can read the 413; past it the connection is dropped instead.
_DRAIN_LIMIT = 16 << 20
_READ_CHUNK = 256 << 10
_METADATA_FIELDS = frozenset({"json", "asset"})
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(?:\s*;[ -~]*)?")
_OCTET_STREAM = "application/octet-stream"


class _Style(enum.Enum):
    """Whose error shape a route answers with."""

    REST = "rest"
    SDK_V1 = "sdk_v1"


class AssetsApi:
    """The asset routes and the store behind them; :meth:`start` before serving."""

    def __init__(self, settings: Settings) -> None:
        self.store = AssetStore(
            settings.assets_dir, max_bytes=settings.max_asset_bytes, ttl=settings.asset_ttl
        )
        self._auth = Authenticator(settings.tokens)
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def max_asset_bytes(self) -> int:
        """The largest asset accepted, for the capabilities document."""
        return self.store.max_bytes

    @property
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/assets", self._upload_asset, methods=["POST"]),
            Route("/api/assets/", self._upload_asset, methods=["POST"]),
            Route("/api/assets/{asset_id}", self._metadata, methods=["GET"]),
            Route("/api/assets/{asset_id}/download", self._download, methods=["GET"]),
            Route("/api/sdk/v1/assets/temporary", self._upload_temporary, methods=["POST"]),
        ]

    async def start(self) -> None:
        """Open the store (an unusable directory is fatal) and start the sweep."""
        try:
            await asyncio.to_thread(self.store.open)
        except AssetStoreUnavailable as exc:
            # One clear line before uvicorn's start-up traceback: why the server stops.
            log.error("server.assets_unavailable", path=exc.path, error=exc.reason)
            raise
        interval = sweep_interval(self.store.ttl)
        self._sweeper = asyncio.get_running_loop().create_task(run_sweeper(self.store, interval))

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    # -- endpoints -------------------------------------------------------------------

    async def _upload_asset(self, request: Request) -> Response:
        return await self._upload(request, _Style.REST)

    async def _upload_temporary(self, request: Request) -> Response:
        return await self._upload(request, _Style.SDK_V1)

    async def _metadata(self, request: Request) -> Response:
        user_id = self._user(request, _Style.REST)
        if isinstance(user_id, Response):
            return user_id
        record = self.store.get(user_id, request.path_params["asset_id"])
        if record is None:
            return _error(404, "NOT_FOUND", "Asset not found", _Style.REST)
        return _json(_asset_json(record, request))

    async def _download(self, request: Request) -> Response:
        user_id = self._user(request, _Style.REST)
        if isinstance(user_id, Response):
            return user_id
        record = self.store.get(user_id, request.path_params["asset_id"])
        handle = None if record is None else self.store.open_bytes(record)
        if record is None or handle is None:
            return _error(404, "NOT_FOUND", "Asset not found", _Style.REST)
        return _FileStream(handle, record)

    # -- upload ----------------------------------------------------------------------

    async def _upload(self, request: Request, style: _Style) -> Response:
        user_id = self._user(request, style)
        if isinstance(user_id, Response):
            return user_id
        try:
            boundary = boundary_of(request.headers.get("content-type", ""))
        except FormError as exc:
            return _error(400, "INVALID_REQUEST", exc.reason, style)
        limit = self.store.max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
            # Refused unread: a client that sent ``Expect: 100-continue`` sends nothing.
            return _error(413, "UPLOAD_TOO_LARGE", _too_large(limit), style)
        chunks = request.stream()
        receiver = _Receiver(self.store, boundary)
        try:
            await receiver.receive(chunks)
            name, content_type, metadata = receiver.description()
            record = await asyncio.to_thread(
                receiver.upload.commit,
                user_id,
                name=name,
                content_type=content_type,
                temporary=style is _Style.SDK_V1,
                metadata=metadata,
            )
        except FormError as exc:
            await _drain(chunks)
            return _error(400, "INVALID_REQUEST", exc.reason, style)
        except AssetTooLarge:
            await _drain(chunks)
            return _error(413, "UPLOAD_TOO_LARGE", _too_large(limit), style)
        except ClientDisconnect:
            log.info("assets.upload_abandoned", received=receiver.received)
            return Response(status_code=400)
        finally:
            receiver.discard()
        log.debug("assets.stored", asset_id=record.id, size=record.size, user_id=user_id)
        if style is _Style.SDK_V1:
            return _json(_temporary_json(record))
        return _json(_asset_json(record, request))

    # -- auth ------------------------------------------------------------------------

    def _user(self, request: Request, style: _Style) -> str | Response:
        """The caller's user id, or the 401 to answer: ``/ws``'s tokens, from the
        ``Authorization`` header only, as the rest of the HTTP API (a token in a URL ends
        up in logs and browser history)."""
        user_id, reason = self._auth.check(request.headers.raw, b"")
        if user_id is not None:
            return user_id
        response = _error(401, "UNAUTHORIZED", reason, style)
        response.headers["www-authenticate"] = "Bearer"
        return response


class _Part(enum.Enum):
    NONE = "none"
    FILE = "file"
    FIELD = "field"
    IGNORED = "ignored"


class _Receiver:
    """Routes one upload's form events: the ``file`` part to disk, ``json`` to memory."""

    def __init__(self, store: AssetStore, boundary: str) -> None:
        self._store = store
        self._reader = FormReader(boundary)
        self._upload: Upload | None = None
        self._part = _Part.NONE
        self._buffer = bytearray()
        self._field = bytearray()
        self._field_name = ""
        self._fields: dict[str, bytes] = {}
        self._filename: str | None = None
        self._file_type: str | None = None
        self.received = 0

    @property
    def upload(self) -> Upload:
        if self._upload is None:
            raise FormError("multipart field 'file' is required")
        return self._upload

    async def receive(self, chunks: AsyncIterator[bytes]) -> None:
        async for chunk in chunks:
            for event in self._reader.feed(chunk):
                self._on_event(event)
            if len(self._buffer) >= _WRITE_BATCH:
                await self._flush()
        self._reader.close()
        await self._flush()
        self.upload  # noqa: B018 - raises FormError when no file part came

    def description(self) -> tuple[str, str, dict[str, Any] | None]:
        """``(name, content_type, metadata)``: the ``json`` field over the file part's."""
        fields: dict[str, Any] = {}
        raw = self._fields.get("json", self._fields.get("asset"))
        if raw is not None and raw.strip():
            try:
                decoded = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise FormError("invalid asset metadata JSON in the 'json' field") from None
            if not isinstance(decoded, dict):
                raise FormError("the 'json' field must be a JSON object")
            fields = decoded
        name = _string(fields.get("name")) or self._filename or "upload"
        content_type = _media_type(_string(fields.get("content_type")) or self._file_type)
        metadata = fields.get("metadata")
        return name, content_type, metadata if isinstance(metadata, dict) else None

    def discard(self) -> None:
        if self._upload is not None:
            self._upload.discard()

    def _on_event(self, event: PartStarted | PartData | PartEnded | FormEnded) -> None:
        match event:
            case PartStarted(name="file"):
                if self._upload is not None:
                    raise FormError("more than one 'file' part")
                self._upload = self._store.begin_upload()
                self._filename, self._file_type = event.filename, event.content_type
                self._part = _Part.FILE
            case PartStarted(filename=str()):
                raise FormError(f"expected the file in multipart field 'file', not {event.name!r}")
            case PartStarted(name=name) if name in _METADATA_FIELDS:
                self._field_name = name
                self._field.clear()
                self._part = _Part.FIELD
            case PartStarted():
                self._part = _Part.IGNORED
            case PartData(data=data):
                self._on_data(data)
            case PartEnded():
                if self._part is _Part.FIELD:
                    self._fields[self._field_name] = bytes(self._field)
                self._part = _Part.NONE
            case FormEnded():
                pass

    def _on_data(self, data: bytes) -> None:
        if self._part is _Part.FILE:
            self.received += len(data)
            if self.received > self._store.max_bytes:
                raise AssetTooLarge(self._store.max_bytes)
            self._buffer += data
        elif self._part is _Part.FIELD:
            if len(self._field) + len(data) > _FIELD_LIMIT:
                raise FormError(
                    f"the {self._field_name!r} field is larger than {_FIELD_LIMIT} bytes"
                )
            self._field += data

    async def _flush(self) -> None:
        if self._buffer:
            batch = bytes(self._buffer)
            self._buffer.clear()
            await asyncio.to_thread(self.upload.write, batch)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read and drop what is left of a refused body, up to :data:`_DRAIN_LIMIT`."""
    drained = 0
    with contextlib.suppress(ClientDisconnect):
        async for chunk in chunks:
            drained += len(chunk)
            if drained > _DRAIN_LIMIT:
                break


class _FileStream(Response):
    """An open asset file, sent in chunks read from a worker thread, then closed.

    The file is opened before the response is built, so an asset swept meanwhile still
    downloads whole; it is closed however the response ends.
    """

    def __init__(self, handle: BinaryIO, record: AssetRecord) -> None:
        self._handle = handle
        size = os.fstat(handle.fileno()).st_size
        super().__init__(
            media_type=record.content_type,
            headers={
                "content-length": str(size),
                "x-content-type-options": "nosniff",
                # Content types come from the uploader: never run one as a page of ours.
                "content-security-policy": "sandbox",
                "cache-control": "private, no-cache",
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handle = self._handle
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while chunk := await asyncio.to_thread(handle.read, _READ_CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-download
        finally:
            handle.close()


# -- shapes ----------------------------------------------------------------------------


def _asset_json(record: AssetRecord, request: Request) -> AssetAnswer:
    """NodeTool's asset JSON; ``expires_at`` is noderun's, set for temporary assets.

    ``get_url`` is absolute, as the address the client used: .NET on Linux and macOS
    parses a bare ``/path`` as a local file, and the SDK downloads ``get_url`` as given.
    """
    base = str(request.base_url).rstrip("/")
    return AssetAnswer(
        id=record.id,
        user_id=record.user_id,
        parent_id=record.user_id,
        name=record.name,
        content_type=record.content_type,
        size=record.size,
        metadata=record.metadata,
        created_at=_iso(record.created_at),
        get_url=f"{base}/api/assets/{record.id}/download",
        expires_at=None if record.expires_at is None else _iso(record.expires_at),
    )


def _temporary_json(record: AssetRecord) -> TemporaryAsset:
    """The SDK v1 temporary-upload answer (``version`` 1)."""
    return TemporaryAsset(
        uri=asset_uri(record.id),
        name=record.name,
        content_type=record.content_type,
        size=record.size,
        expires_at=None if record.expires_at is None else _iso(record.expires_at),
    )


def _json(answer: msgspec.Struct, status: int = 200) -> Response:
    """``answer`` encoded as the stdlib encodes it: an asset's metadata is the uploader's
    JSON, and its numbers keep the spelling they always had (``1e+16``, not ``1e16``)."""
    return JSONResponse(msgspec.to_builtins(answer), status_code=status)


def _error(status: int, code: str, message: str, style: _Style) -> Response:
    """The SDK API's error body on its route, NodeTool's REST ``{"detail"}`` on the others."""
    body: msgspec.Struct
    if style is _Style.SDK_V1:
        body = UploadRefusal(code=code, message=message, retryable=False, detail=message)
    else:
        body = RestError(detail=message)
    return _json(body, status)


def _too_large(limit: int) -> str:
    return f"Upload exceeds the configured {limit} byte limit"


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _string(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _media_type(value: str | None) -> str:
    return value if value is not None and _MEDIA_TYPE.fullmatch(value) else _OCTET_STREAM
