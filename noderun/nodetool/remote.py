"""A node that runs in a NodeTool worker: a :class:`NodeSpec` whose function asks the pool.

The function is an ``async def`` (or, for a streaming node, an async
generator) taking the run's :class:`NodeContext`, so the scheduler treats it
like any async node of any graph. What the worker reports while the node runs
is relayed: ``progress`` → ``node_progress``, a ``log_update`` → ``log_update``
(any other update → a log line naming it), each streamed item → the node's
streamed outputs, and its text values also → ``chunk``.

Outputs that come with a blob (images, audio) become the NodeTool asset ref
with ``uri`` ``""`` and the bytes inline in ``data``: that is the value inside
the run (a downstream node gets the bytes) and what a binary client gets
(MessagePack ``bin``). A text client gets it the way NodeTool's ``data_uri``
asset output mode writes it, ``uri`` a ``data:`` URI and ``data`` null: the
JSON encoding of every frame does that (:func:`noderun.protocol.codec.text_form`),
so stored frames replayed to a text client get it too.

The other way, a value given to a media property travels as the request's
blob, which the worker hands the node as a file of its workspace, when it is
bare bytes, an asset ref with inline bytes (``bin``, or from a text client
base64 text or a ``data:`` URI in ``data``), a ref whose ``uri`` is a ``data:``
URI (what a text client got for a media output), or a reference to a stored
asset of the run's user (``asset://<id>``, ``asset_id`` or its download URL):
the asset's bytes are read from the store. Bad base64, a bad ``data:`` URI,
another user's asset, or no such asset, fails the node naming the input,
before anything is sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from noderun.assets import AssetNotFound, AssetResolver, AssetStore, asset_id_of
from noderun.nodetool.errors import MediaInputError
from noderun.nodetool.pool import WorkerPool
from noderun.nodetool.wire import WorkerFrame
from noderun.protocol.media import DATA_SCHEME, parse_data_uri
from noderun.runtime.context import NodeContext
from noderun.runtime.node import NodeSpec, Property

__all__ = ["RemoteNodeSpec", "remote_spec"]

_SEVERITIES = frozenset({"info", "warning", "error"})
#: NodeTool's asset ref types: a property of one of these takes its bytes as a blob.
_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "model_3d", "asset"})


@dataclass(frozen=True, slots=True)
class RemoteNodeSpec(NodeSpec):
    """A worker's node; its metadata is NodeTool's own, not rebuilt from Python types."""

    meta: Mapping[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        return dict(self.meta)


def remote_spec(
    pool: WorkerPool,
    meta: Mapping[str, Any],
    secrets: Callable[[Iterable[str]], dict[str, str]],
    assets: AssetStore | None = None,
) -> RemoteNodeSpec:
    """The spec of the node ``meta`` describes, run through ``pool``.

    ``assets`` is where asset references in media inputs are read from (for the
    run's user); without it such a reference fails the node.

    Properties are untyped (the worker checks them against the node's model)
    and none has a default here: only the values a graph sets are sent, so the
    node's own defaults apply to the rest.
    """
    node_type = str(meta["node_type"])
    names = [p["name"] for p in meta.get("properties") or () if isinstance(p, dict)]
    outputs = [o["name"] for o in meta.get("outputs") or () if isinstance(o, dict)] or ["output"]
    media = frozenset(
        p["name"]
        for p in meta.get("properties") or ()
        if isinstance(p, dict)
        and isinstance(p.get("type"), dict)
        and p["type"].get("type") in _MEDIA_TYPES
    )
    streaming = bool(meta.get("is_streaming_output"))
    single = outputs == ["output"]
    keys = tuple(str(key) for key in meta.get("required_settings") or ())
    call = _Call(pool, node_type, media, lambda: secrets(keys), assets)
    fn = _streaming(call, single, outputs) if streaming else _unary(call, single)
    return RemoteNodeSpec(
        node_type=node_type,
        title=str(meta.get("title") or node_type.rpartition(".")[2]),
        description=str(meta.get("description") or ""),
        fn=fn,
        kind="stream" if streaming else "async",
        properties={name: Property(name=name, type=Any, plain=Any) for name in names},
        outputs=dict.fromkeys(outputs, Any),
        takes_context=True,
        meta=meta,
    )


class _Call:
    """How to send one node's ``execute``: its type, media properties and secrets."""

    __slots__ = ("assets", "media", "node_type", "pool", "secrets")

    def __init__(
        self,
        pool: WorkerPool,
        node_type: str,
        media: frozenset[str],
        secrets: Callable[[], dict[str, str]],
        assets: AssetStore | None = None,
    ) -> None:
        self.pool = pool
        self.node_type = node_type
        self.media = media
        self.secrets = secrets
        self.assets = assets

    async def __call__(
        self,
        ctx: NodeContext,
        fields: dict[str, object],
        on_event: Callable[[WorkerFrame], None],
        stream: bool,
    ) -> dict[str, Any]:
        blobs: dict[str, bytes] = {}
        for name in self.media.intersection(fields):
            blob = await self._blob(ctx, name, fields[name])
            if blob is not None:
                blobs[name] = blob
                del fields[name]
        return await self.pool.execute(
            self.node_type,
            fields,
            stream=stream,
            secrets=self.secrets(),
            blobs=blobs,
            on_event=on_event,
        )

    async def _blob(self, ctx: NodeContext, name: str, value: object) -> bytes | None:
        """The bytes media input ``name`` carries or refers to; ``None`` for a value the
        worker resolves itself (an empty ref, a URL it can fetch)."""
        data = value.get("data") if isinstance(value, dict) else value
        if isinstance(data, bytes | bytearray):
            return bytes(data)
        if isinstance(data, str) and data:
            if data[:5].lower() == DATA_SCHEME:
                return self._from_data_uri(name, "data", data)
            # A text client's base64, as the JSON encoder writes ``bin``.
            try:
                return base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise MediaInputError(self.node_type, name, "data is not base64") from None
        uri = value.get("uri") if isinstance(value, dict) else None
        if isinstance(uri, str) and uri[:5].lower() == DATA_SCHEME:
            # What a text client got for a media output (and may send back).
            return self._from_data_uri(name, "uri", uri)
        asset_id = asset_id_of(value)
        if asset_id is None:
            return None
        if self.assets is None:
            raise MediaInputError(self.node_type, name, "this server stores no assets")
        resolver = AssetResolver(self.assets, ctx.user_id)
        try:
            # Blocking file I/O, off the loop; the store capped the asset's size on upload.
            return await asyncio.to_thread(resolver.read, value)
        except AssetNotFound:
            raise MediaInputError(
                self.node_type, name, f"asset {asset_id!r} not found for this user"
            ) from None

    def _from_data_uri(self, name: str, key: str, uri: str) -> bytes:
        try:
            return parse_data_uri(uri)[1]
        except ValueError as exc:
            reason = f"{key} is a bad data: URI ({exc})"
            raise MediaInputError(self.node_type, name, reason) from None


def _unary(call: _Call, single: bool) -> Callable[..., Any]:
    async def run_remote(ctx: NodeContext, **fields: object) -> object:
        data = await call(ctx, fields, lambda frame: _relay(ctx, frame), False)
        values = _values(data)
        return values.get("output") if single else values

    return run_remote


def _streaming(call: _Call, single: bool, outputs: list[str]) -> Callable[..., Any]:
    async def stream_remote(ctx: NodeContext, **fields: object) -> AsyncIterator[object]:
        # Unbounded: filled by the worker's reader, which serves every request on
        # that worker and so must never wait; the node's own output bounds it.
        items: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def on_event(frame: WorkerFrame) -> None:
            if frame.type == "chunk" and isinstance(frame.data, dict):
                items.put_nowait(frame.data)
            else:
                _relay(ctx, frame)

        task = asyncio.get_running_loop().create_task(call(ctx, fields, on_event, True))
        task.add_done_callback(lambda _task: items.put_nowait(None))
        try:
            while (chunk := await items.get()) is not None:
                produced = {
                    name: value
                    for name, value in _values(chunk).items()
                    if value is not None and name in outputs
                }
                for value in produced.values():
                    if isinstance(value, str):
                        ctx.chunk(value)
                if produced:
                    yield produced["output"] if single and "output" in produced else produced
            await task
        finally:
            # The pool sends the worker ``cancel`` when this task is cancelled.
            task.cancel()

    return stream_remote


def _values(data: Mapping[str, Any]) -> dict[str, Any]:
    """``outputs`` with each blob put into its output's asset ref (or as the value)."""
    outputs = data.get("outputs")
    values: dict[str, Any] = dict(outputs) if isinstance(outputs, dict) else {}
    blobs = data.get("blobs")
    if isinstance(blobs, dict):
        for name, blob in blobs.items():
            ref = values.get(name)
            if isinstance(ref, dict):
                # The worker's ``blob://`` uri means nothing outside it: the bytes are the asset.
                values[name] = {**ref, "uri": "", "data": blob}
            else:
                values[name] = blob
    return values


def _relay(ctx: NodeContext, frame: WorkerFrame) -> None:
    data = frame.data if isinstance(frame.data, dict) else {}
    if frame.type == "progress":
        progress, total = data.get("progress"), data.get("total")
        if isinstance(progress, int | float) and isinstance(total, int | float):
            ctx.progress(int(progress), int(total))
    elif frame.type == "update":
        kind = str(data.get("type") or "update")
        content = data.get("content")
        if kind == "log_update" and isinstance(content, str):
            severity = data.get("severity")
            ctx.log(content, severity if severity in _SEVERITIES else "info")
        else:
            ctx.log(content if isinstance(content, str) else f"{kind} from the worker")
