"""Uploads that succeed: every allowed format becomes three metadata-free WebP variants."""

import io
from pathlib import Path

import pytest
from media_testkit import API, bomb_png, gif, has_gps, jpeg, png, start, webp
from PIL import Image

from quark_sdk.testing import QuarkTestEnv


@pytest.mark.parametrize(
    ("maker", "filename", "mime"),
    [
        (jpeg, "a.jpg", "image/jpeg"),
        (png, "a.png", "image/png"),
        (webp, "a.webp", "image/webp"),
        (gif, "a.gif", "image/gif"),
    ],
)
async def test_each_format_becomes_clean_webp_variants(
    quark: QuarkTestEnv, tmp_path: Path, maker, filename, mime
) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    data = maker()
    if maker is not gif:
        assert has_gps(data)  # the fixture really carries EXIF GPS
    created = await h.upload_ok(alice, data, filename=filename, content_type="application/octet-stream")
    assert created["status"] == "uploaded" and created["mime_type"] == mime
    assert created["size"] == len(data) and created["filename"] == filename
    media = await h.settled(created["id"], alice)
    assert media["status"] == "ready", media
    assert set(media["variants"]) == {"thumb", "medium", "original"}
    src = Image.open(io.BytesIO(data))
    assert (media["width"], media["height"]) == src.size
    assert media["blurhash"] and media["dominant_color"].startswith("#")
    for name, variant in media["variants"].items():
        resp = await h.fetch(variant["url"])
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "image/webp"
        img = Image.open(io.BytesIO(resp.content))
        assert img.format == "WEBP" and img.size == (variant["width"], variant["height"])
        assert not has_gps(resp.content), name
        assert max(img.size) <= {"thumb": 320, "medium": 1280, "original": 10_000}[name]
    # Only the variants remain: the raw upload (with its EXIF) is gone.
    assert sorted(await h.objects()) == sorted(
        f"{alice.id}/{media['id']}/{n}.webp" for n in ("thumb", "medium", "original")
    )


async def test_orientation_is_applied_and_large_images_are_scaled(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    media = await h.ready(alice, jpeg(2000, 1000, orientation=6))  # rotated 90°: displayed portrait
    assert (media["width"], media["height"]) == (1000, 2000)
    v = media["variants"]
    assert (v["original"]["width"], v["original"]["height"]) == (1000, 2000)
    assert (v["medium"]["width"], v["medium"]["height"]) == (640, 1280)
    assert (v["thumb"]["width"], v["thumb"]["height"]) == (160, 320)
    # A small image is never enlarged.
    small = await h.ready(alice, png(100, 80))
    assert {(x["width"], x["height"]) for x in small["variants"].values()} == {(100, 80)}


async def test_events_carry_the_contract_fields(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    media = await h.ready(alice, jpeg(), purpose="avatar")
    [uploaded] = await h.published("quark.media.uploaded")
    assert uploaded["media_id"] == media["id"] and uploaded["owner_id"] == alice.id
    assert uploaded["purpose"] == "avatar" and uploaded["mime_type"] == "image/jpeg"
    [processed] = await h.published("quark.media.processed")
    assert processed["media_id"] == media["id"] and processed["owner_id"] == alice.id
    assert processed["purpose"] == "avatar"
    assert processed["variants"] == {n: f"{API}/{media['id']}/variants/{n}" for n in ("thumb", "medium", "original")}
    assert (processed["width"], processed["height"]) == (640, 480)
    assert await h.published("quark.media.failed") == []


async def test_purpose_as_query_parameter_and_public_base_url(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, public_base_url="https://cdn.example")
    alice = h.account()
    created = await h.upload_ok(alice, jpeg(), params={"purpose": "post"})
    assert created["purpose"] == "post"
    media = await h.settled(created["id"], alice)
    assert media["variants"]["thumb"]["url"] == f"https://cdn.example{API}/{media['id']}/variants/thumb"


async def test_pixel_limit_is_configurable(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, max_pixels=10_000)
    resp = await h.upload(h.account(), bomb_png(101))
    assert resp.status_code == 422, resp.text
    assert await h.objects() == []
