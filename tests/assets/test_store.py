"""AssetStore against a real directory: layout, ownership, expiry, sweep, crash leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from noderun.assets import AssetStore, AssetStoreUnavailable, AssetTooLarge
from noderun.assets.store import STALE_AFTER


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> AssetStore:
    store = AssetStore(tmp_path / "assets", max_bytes=1000, ttl=60.0, clock=clock)
    store.open()
    return store


def test_open_creates_the_directories(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "a" / "b", max_bytes=10, ttl=1.0)
    store.open()
    root = tmp_path / "a" / "b"
    assert {p.name for p in root.iterdir()} == {"data", "meta", "incoming", "temporary"}
    assert {p.name for p in (root / "temporary").iterdir()} == {"data", "meta"}


def test_open_on_a_path_that_cannot_be_created_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = AssetStore(blocker / "assets", max_bytes=10, ttl=1.0)
    with pytest.raises(AssetStoreUnavailable) as caught:
        store.open()
    assert caught.value.path == str(blocker / "assets")
    assert str(blocker / "assets") in str(caught.value)


def test_put_then_get_returns_the_record_and_the_bytes(store: AssetStore, clock: Clock) -> None:
    record = store.put("alice", b"\x89PNG-bytes", name="a.png", content_type="image/png")
    assert record.size == 10 and record.created_at == clock.now and record.expires_at is None
    assert store.get("alice", record.id) == record
    assert store.path(record).read_bytes() == b"\x89PNG-bytes"
    handle = store.open_bytes(record)
    assert handle is not None
    with handle:
        assert handle.read() == b"\x89PNG-bytes"
    assert files_under(store.root) == [f"data/{record.id}", f"meta/{record.id}.json"]


def test_another_user_does_not_see_the_asset(store: AssetStore) -> None:
    record = store.put("alice", b"x", name="x", content_type="text/plain")
    assert store.get("bob", record.id) is None


@pytest.mark.parametrize("asset_id", ["", "../meta/x", "ABC", "0" * 31, "0" * 33, "g" * 32])
def test_ids_that_are_not_ours_are_not_found(store: AssetStore, asset_id: str) -> None:
    assert store.get("alice", asset_id) is None


def test_upload_past_the_limit_raises_and_discard_leaves_nothing(store: AssetStore) -> None:
    upload = store.begin_upload()
    upload.write(b"x" * 1000)
    with pytest.raises(AssetTooLarge) as caught:
        upload.write(b"x")
    assert caught.value.limit == 1000
    upload.discard()
    upload.discard()
    assert files_under(store.root) == []


def test_a_committed_upload_cannot_be_committed_again(store: AssetStore) -> None:
    upload = store.begin_upload()
    upload.write(b"abc")
    upload.commit("alice", name="a", content_type="text/plain")
    with pytest.raises(RuntimeError):
        upload.commit("alice", name="a", content_type="text/plain")
    upload.discard()  # after a commit: keeps the asset
    assert len(files_under(store.root / "data")) == 1


def test_temporary_asset_expires_at_its_ttl_and_the_sweep_deletes_it(
    store: AssetStore, clock: Clock
) -> None:
    kept = store.put("alice", b"keep", name="k", content_type="text/plain")
    temporary = store.put("alice", b"tmp", name="t", content_type="text/plain", temporary=True)
    assert temporary.expires_at == clock.now + 60.0
    clock.now += 59.0
    assert store.get("alice", temporary.id) == temporary
    assert store.sweep() == 0
    clock.now += 1.0
    assert store.get("alice", temporary.id) is None  # refused before any sweep
    assert files_under(store.root / "temporary") == [
        f"data/{temporary.id}",
        f"meta/{temporary.id}.json",
    ]
    assert store.sweep() == 1
    assert files_under(store.root) == [f"data/{kept.id}", f"meta/{kept.id}.json"]
    assert store.get("alice", kept.id) == kept


def make_stale(*paths: Path) -> None:
    old = os.stat(paths[0]).st_mtime - STALE_AFTER - 1
    for path in paths:
        os.utime(path, (old, old))


def test_sweep_removes_crash_leftovers_only_once_they_are_stale(store: AssetStore) -> None:
    partial = store.root / "incoming" / "upload-x.part"
    partial.write_bytes(b"half an upload")
    orphan = store.root / "temporary" / "data" / ("a" * 32)  # its metadata never landed
    orphan.write_bytes(b"orphan")
    store.sweep()
    assert partial.exists() and orphan.exists()
    make_stale(partial, orphan)
    store.sweep()
    assert files_under(store.root) == []


def test_open_removes_stale_leftovers_of_persistent_assets(store: AssetStore) -> None:
    """The sweep reads only temporary assets; persistent leftovers go at start-up."""
    kept = store.put("alice", b"x", name="x", content_type="text/plain")
    fresh, stale = store.root / "data" / ("b" * 32), store.root / "data" / ("c" * 32)
    for orphan in (fresh, stale):
        orphan.write_bytes(b"orphan")
    make_stale(stale)
    store.sweep()
    assert stale.exists()
    store.open()
    assert fresh.exists() and not stale.exists()
    assert store.get("alice", kept.id) == kept


def test_a_corrupt_metadata_file_is_not_found(store: AssetStore) -> None:
    record = store.put("alice", b"x", name="x", content_type="text/plain")
    (store.root / "meta" / f"{record.id}.json").write_bytes(b"{not json")
    assert store.get("alice", record.id) is None
