"""Asset bytes and metadata in a directory, one file pair per asset.

Layout under the root::

    data/<id>                   the bytes of a persistent asset
    meta/<id>.json              its :class:`AssetRecord` (msgspec JSON)
    temporary/data/<id>         the same for temporary assets, apart so that the
    temporary/meta/<id>.json    periodic sweep reads only theirs
    incoming/                   uploads in progress and metadata being written

An asset exists once its metadata file does. Every file is written in ``incoming/``,
fsynced, then renamed into place (bytes first, metadata last), and the directories are
fsynced after the renames: a crash leaves either the whole asset or stray files that are
removed once they are stale (by :meth:`AssetStore.sweep`, and for persistent assets at
:meth:`AssetStore.open`). Deletion removes the metadata first, for the same reason.

Methods here do blocking file I/O; the server calls the slow ones (commit, sweep)
from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from noderun.assets.errors import AssetStoreUnavailable, AssetTooLarge

__all__ = ["AssetRecord", "AssetStore", "Upload"]

_ID = re.compile(r"[0-9a-f]{32}")
#: Stray files (an upload cut off by a crash, bytes whose metadata never landed) are
#: removed once untouched for this long. An upload in progress touches its file with
#: every write, and the rename window between bytes and metadata is short, so
#: nothing live is this old.
STALE_AFTER = 600.0


class AssetRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored asset; ``expires_at`` is set for temporary assets (epoch seconds)."""

    id: str
    user_id: str
    name: str
    content_type: str
    size: int
    created_at: float
    expires_at: float | None = None
    metadata: dict[str, Any] | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(AssetRecord).decode


@dataclass(frozen=True, slots=True)
class _Shelf:
    """The two directories of one kind of asset."""

    data: Path
    meta: Path

    def meta_of(self, asset_id: str) -> Path:
        return self.meta / f"{asset_id}.json"


class AssetStore:
    """Per-user assets under ``root``; ``max_bytes`` caps one asset, ``ttl`` a temporary one.

    ``max_bytes`` and ``ttl`` are plain attributes so the server can advertise them.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._persistent = _Shelf(self.root / "data", self.root / "meta")
        self._temporary = _Shelf(self.root / "temporary" / "data", self.root / "temporary" / "meta")
        self._incoming = self.root / "incoming"

    def open(self) -> None:
        """Create the directories and prove they can be written (fail loudly if not),
        then remove stale leftovers of persistent assets (the sweep sees only temporary
        ones)."""
        shelves = (self._persistent, self._temporary)
        try:
            for directory in (*(d for s in shelves for d in (s.data, s.meta)), self._incoming):
                directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._incoming) as probe:
                probe.write(b"probe")
                probe.flush()
                os.fsync(probe.fileno())
            for shelf in shelves:
                for directory in (shelf.data, shelf.meta):
                    if not os.access(directory, os.W_OK | os.X_OK):
                        raise PermissionError(f"{directory} is not writable")
        except OSError as exc:
            raise AssetStoreUnavailable(str(self.root), exc.strerror or str(exc)) from exc
        _remove_stale_orphans(self._persistent, time.time())

    # -- writing ---------------------------------------------------------------------

    def begin_upload(self) -> Upload:
        """A new upload: bytes go to a file in ``incoming/`` until :meth:`Upload.commit`."""
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - Upload owns and closes it
            dir=self._incoming, prefix="upload-", suffix=".part", delete=False
        )
        return Upload(self, handle)

    def put(
        self,
        user_id: str,
        data: bytes,
        *,
        name: str,
        content_type: str,
        temporary: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> AssetRecord:
        """Store ``data`` as a new asset of ``user_id`` in one call."""
        upload = self.begin_upload()
        try:
            upload.write(data)
            return upload.commit(
                user_id,
                name=name,
                content_type=content_type,
                temporary=temporary,
                metadata=metadata,
            )
        finally:
            upload.discard()

    def _shelf(self, record: AssetRecord) -> _Shelf:
        return self._persistent if record.expires_at is None else self._temporary

    def _publish(self, upload_path: Path, record: AssetRecord) -> None:
        shelf = self._shelf(record)
        os.replace(upload_path, shelf.data / record.id)
        meta_tmp = self._incoming / f"{record.id}.json.part"
        with meta_tmp.open("wb") as meta:
            meta.write(_encode(record))
            meta.flush()
            os.fsync(meta.fileno())
        os.replace(meta_tmp, shelf.meta_of(record.id))
        for directory in (shelf.data, shelf.meta):
            _fsync_directory(directory)

    # -- reading ---------------------------------------------------------------------

    def get(self, user_id: str, asset_id: str) -> AssetRecord | None:
        """``user_id``'s live asset ``asset_id``; ``None`` when absent, another user's,
        or a temporary asset past its expiry (as if the sweep had already run)."""
        record = self._load(asset_id)
        if record is None or record.user_id != user_id or record.expired(self._clock()):
            return None
        return record

    def path(self, record: AssetRecord) -> Path:
        """Where ``record``'s bytes are (they may vanish if it expires meanwhile)."""
        return self._shelf(record).data / record.id

    def open_bytes(self, record: AssetRecord) -> BinaryIO | None:
        """``record``'s bytes opened for reading, or ``None`` if they are gone.

        An open file stays readable when the sweep deletes it meanwhile.
        """
        try:
            return self.path(record).open("rb")
        except FileNotFoundError:
            return None

    def _load(self, asset_id: str) -> AssetRecord | None:
        if not _ID.fullmatch(asset_id):
            return None
        for shelf in (self._persistent, self._temporary):
            try:
                raw = shelf.meta_of(asset_id).read_bytes()
            except FileNotFoundError:
                continue
            try:
                return _decode(raw)
            except msgspec.DecodeError:
                return None
        return None

    # -- deleting --------------------------------------------------------------------

    def delete(self, asset_id: str) -> None:
        if not _ID.fullmatch(asset_id):
            return
        for shelf in (self._persistent, self._temporary):
            with contextlib.suppress(FileNotFoundError):
                shelf.meta_of(asset_id).unlink()
            with contextlib.suppress(FileNotFoundError):
                (shelf.data / asset_id).unlink()

    def sweep(self) -> int:
        """Delete expired temporary assets, stale uploads and stale leftovers of temporary
        assets; the number of assets deleted. Reads only temporary assets' metadata."""
        now = self._clock()
        deleted = 0
        for meta in self._temporary.meta.glob("*.json"):
            asset_id = meta.name.removesuffix(".json")
            record = self._load(asset_id)
            if record is not None and record.expired(now):
                self.delete(asset_id)
                deleted += 1
        wall = time.time()
        for stray in self._incoming.iterdir():
            _remove_if_stale(stray, wall)
        _remove_stale_orphans(self._temporary, wall)
        return deleted

    def _new_record(
        self,
        user_id: str,
        size: int,
        *,
        name: str,
        content_type: str,
        temporary: bool,
        metadata: dict[str, Any] | None,
    ) -> AssetRecord:
        now = self._clock()
        return AssetRecord(
            id=uuid.uuid4().hex,
            user_id=user_id,
            name=name,
            content_type=content_type,
            size=size,
            created_at=now,
            expires_at=now + self.ttl if temporary else None,
            metadata=metadata,
        )


class Upload:
    """Bytes on their way into the store: :meth:`write`, then :meth:`commit` or
    :meth:`discard` (safe to call after a commit, and more than once)."""

    def __init__(self, store: AssetStore, handle: Any) -> None:
        self._store = store
        self._handle = handle
        self._path = Path(handle.name)
        self.size = 0
        self._done = False

    def write(self, data: bytes) -> None:
        """Append ``data``; :class:`AssetTooLarge` past the store's limit."""
        if self.size + len(data) > self._store.max_bytes:
            raise AssetTooLarge(self._store.max_bytes)
        self._handle.write(data)
        self.size += len(data)

    def commit(
        self,
        user_id: str,
        *,
        name: str,
        content_type: str,
        temporary: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> AssetRecord:
        """Make the bytes an asset of ``user_id`` (durably: fsync, rename, fsync)."""
        if self._done:
            raise RuntimeError("upload already committed or discarded")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        record = self._store._new_record(
            user_id,
            self.size,
            name=name,
            content_type=content_type,
            temporary=temporary,
            metadata=metadata,
        )
        self._store._publish(self._path, record)
        self._done = True
        return record

    def discard(self) -> None:
        """Remove the bytes written so far, unless they were committed."""
        if self._done:
            return
        self._done = True
        self._handle.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_orphans(shelf: _Shelf, now: float) -> None:
    """Bytes whose metadata never landed (a crash between the two renames)."""
    for data in shelf.data.iterdir():
        if not shelf.meta_of(data.name).exists():
            _remove_if_stale(data, now)


def _remove_if_stale(path: Path, now: float) -> None:
    try:
        if now - path.stat().st_mtime > STALE_AFTER:
            path.unlink()
    except FileNotFoundError:
        pass
