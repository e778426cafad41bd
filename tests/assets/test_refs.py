"""asset:// references in NodeTool values, resolved per user against a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from noderun.assets import (
    AssetNotFound,
    AssetRecord,
    AssetResolver,
    AssetStore,
    asset_id_of,
    asset_uri,
)

ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"type": "image", "uri": "", "asset_id": ID, "data": None}, ID),
        ({"type": "image", "uri": f"asset://{ID}", "asset_id": None}, ID),
        ({"type": "audio", "uri": f"asset:///{ID}"}, ID),
        ({"type": "video", "uri": f"ASSET://{ID}.mp4"}, ID),
        ({"type": "image", "uri": f"/api/assets/{ID}/download", "asset_id": None}, ID),
        ({"type": "image", "uri": f"http://h:7777/api/assets/{ID}/download"}, ID),
        ({"type": "image", "uri": f"ftp://h/api/assets/{ID}/download"}, None),
        ({"type": "image", "uri": "https://example.com/a.png", "asset_id": None}, None),
        ({"type": "image", "uri": "/api/assets/a/b/download"}, None),
        ({"type": "image", "uri": "asset://"}, None),
        ({"type": "image", "uri": "", "asset_id": "", "data": b"inline"}, None),
        ({"uri": f"asset://{ID}"}, None),  # no type: not a NodeTool media value
        (f"asset://{ID}", None),
        ([{"type": "image", "asset_id": ID}], None),
        (None, None),
    ],
)
def test_asset_id_of(value: object, expected: str | None) -> None:
    assert asset_id_of(value) == expected


def test_asset_uri_round_trips() -> None:
    assert asset_id_of({"type": "image", "uri": asset_uri(ID)}) == ID


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    store = AssetStore(tmp_path, max_bytes=1 << 20, ttl=60.0)
    store.open()
    return store


@pytest.fixture
def image(store: AssetStore) -> AssetRecord:
    return store.put("alice", b"\x89PNG", name="a.png", content_type="image/png")


def test_resolve_gives_the_record_and_path(store: AssetStore, image: AssetRecord) -> None:
    resolver = AssetResolver(store, "alice")
    resolved = resolver.resolve({"type": "image", "uri": asset_uri(image.id)})
    assert resolved is not None
    assert resolved.record == image
    assert resolved.path.read_bytes() == b"\x89PNG"
    assert resolver.read({"type": "image", "uri": "", "asset_id": image.id}) == b"\x89PNG"
    assert resolver.resolve({"type": "image", "uri": "https://x/y.png"}) is None
    assert resolver.read("plain text") is None


def test_another_users_reference_is_not_found(store: AssetStore, image: AssetRecord) -> None:
    with pytest.raises(AssetNotFound) as caught:
        AssetResolver(store, "bob").resolve({"type": "image", "asset_id": image.id})
    assert caught.value.asset_id == image.id


def test_unknown_reference_is_not_found(store: AssetStore) -> None:
    with pytest.raises(AssetNotFound):
        AssetResolver(store, "alice").read({"type": "image", "uri": asset_uri(ID)})


def test_bytes_swept_after_the_lookup_are_not_found(store: AssetStore, image: AssetRecord) -> None:
    resolved = AssetResolver(store, "alice").resolve({"type": "image", "asset_id": image.id})
    assert resolved is not None
    store.delete(image.id)
    with pytest.raises(AssetNotFound):
        resolved.read_bytes()


def test_inline_fills_data_of_every_nested_reference(store: AssetStore, image: AssetRecord) -> None:
    ref = {"type": "image", "uri": asset_uri(image.id), "asset_id": None, "data": None}
    value = {"images": [ref, {"type": "image", "uri": "https://x/y.png"}], "n": 3, "s": "t"}
    inlined = AssetResolver(store, "alice").inline(value)
    assert inlined == {
        "images": [{**ref, "data": b"\x89PNG"}, {"type": "image", "uri": "https://x/y.png"}],
        "n": 3,
        "s": "t",
    }
    assert ref["data"] is None  # the caller's value is not changed
