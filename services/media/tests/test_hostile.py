"""Files that lie about what they are, or would hurt the decoder: refused with a 4xx, nothing stored.

"Nothing stored" is checked three ways after every refusal: no row, no event, no object.
"""

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from media_testkit import API, assert_problem, bomb_png, gif, jpeg, png, start, webp
from PIL import Image

from quark_sdk.testing import QuarkTestEnv

PHP = b"<?php system($_GET['c']); ?>\n"
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(1)</script><rect width='10' height='10'/></svg>"
)


def jpeg_with_php_comment() -> bytes:
    """A valid JPEG carrying PHP in a COM segment (the classic upload-bypass polyglot)."""
    data = jpeg(64, 64, gps=False)
    comment = b"\xff\xfe" + (len(PHP) + 2).to_bytes(2, "big") + PHP
    return data[:2] + comment + data[2:]


def png_with_html_chunk() -> bytes:
    """A valid PNG whose tEXt chunk holds an HTML document."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", HTML.decode())
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


HOSTILE: dict[str, tuple[Callable[[], bytes], str, int]] = {
    "php renamed .jpg": (lambda: PHP, "shell.jpg", 422),
    "html renamed .jpg": (lambda: HTML, "page.jpg", 422),
    "svg with script": (lambda: SVG, "logo.svg", 422),
    "svg renamed .png": (lambda: SVG, "logo.png", 422),
    "jpeg + appended php": (lambda: jpeg(64, 64, gps=False) + PHP, "poly.jpg", 422),
    "gif header + php (GIFAR style)": (lambda: b"GIF89a" + PHP, "poly.gif", 422),
    "jpeg with php comment": (jpeg_with_php_comment, "poly.jpg", 422),
    "png with html text chunk": (png_with_html_chunk, "poly.png", 422),
    "png + appended zip": (lambda: png(32, 32, gps=False) + b"PK\x03\x04" + b"\x00" * 40, "poly.png", 422),
    "webp + appended data": (lambda: webp(32, 32, gps=False) + b"#!/bin/sh\nrm -rf /\n", "poly.webp", 422),
    "truncated jpeg": (lambda: truncated(jpeg(800, 600, gps=False)), "cut.jpg", 422),
    "truncated png": (lambda: truncated(png(300, 300, gps=False)), "cut.png", 422),
    "truncated gif": (lambda: truncated(gif(), 0.5), "cut.gif", 422),
    "jpeg header only": (lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", "head.jpg", 422),
    "decompression bomb": (bomb_png, "bomb.png", 422),
    "zero bytes": (lambda: b"", "empty.jpg", 422),
    "random bytes": (lambda: bytes(range(256)) * 20, "noise.jpg", 422),
    "bmp (not allowed)": (lambda: _bmp(), "a.bmp", 422),
}


def _bmp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "BMP")
    return buf.getvalue()


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_file_is_refused_and_nothing_is_stored(quark: QuarkTestEnv, tmp_path: Path, case: str) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    maker, filename, status = HOSTILE[case]
    before = await h.snapshot()
    resp = await h.upload(alice, maker(), filename=filename, content_type="image/jpeg")
    body = assert_problem(resp, status)
    # Not an image by its bytes (`unsupported-image`), or an image that cannot be decoded (`invalid-input`).
    assert body["type"].rsplit("/", 1)[1] in ("unsupported-image", "invalid-input")
    assert await h.snapshot() == before
    assert list((tmp_path / "media-store" / "tmp").glob("*")) == []


async def test_over_size_stream_is_stopped_at_the_limit(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, max_upload_bytes=64 * 1024)
    alice = h.account()
    before = await h.snapshot()
    big = jpeg(1500, 1500, gps=False, quality=100)
    assert len(big) > 64 * 1024
    body = assert_problem(await h.upload(alice, big), 413)
    assert body["max_size"] == 64 * 1024
    assert await h.snapshot() == before

    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        """No Content-Length, and more than the limit: the service stops reading at the limit."""
        nonlocal sent
        yield big[:4096]
        while sent < 10 * 1024 * 1024:
            sent += 8192
            yield b"\x00" * 8192

    boundary = "qb"

    async def multipart() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        async for chunk in endless():
            yield chunk

    resp = await h.client.post(
        API, content=multipart(), headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_problem(resp, 413)
    assert sent < 1024 * 1024  # stopped early, not after reading all 10 MB
    assert await h.snapshot() == before


async def test_declared_length_over_the_limit_is_refused_before_reading(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path, max_upload_bytes=64 * 1024)
    resp = await h.client.post(
        API,
        content=b"x" * 10,
        headers={
            **h.account().headers,
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": "99999999",
        },
    )
    assert resp.status_code in (400, 413)


@pytest.mark.parametrize(
    ("headers", "content", "status"),
    [
        ({"Content-Type": "application/json"}, b'{"file": "x"}', 415),
        ({"Content-Type": "image/jpeg"}, b"\xff\xd8\xff", 415),
        ({}, b"", 415),
        ({"Content-Type": "multipart/form-data"}, b"--x\r\n", 422),
        ({"Content-Type": "multipart/form-data; boundary=qb"}, b"garbage without boundaries", 422),
        (
            {"Content-Type": "multipart/form-data; boundary=qb"},
            b'--qb\r\nContent-Disposition: form-data; name="other"\r\n\r\nhello\r\n--qb--\r\n',
            422,
        ),
        (
            {"Content-Type": "multipart/form-data; boundary=qb"},
            b'--qb\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff\xd8\xff\xe0',
            422,
        ),
    ],
)
async def test_malformed_requests_are_4xx(
    quark: QuarkTestEnv, tmp_path: Path, headers: dict[str, str], content: bytes, status: int
) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    before = await h.snapshot()
    resp = await h.client.post(API, content=content, headers={**alice.headers, **headers})
    assert_problem(resp, status)
    assert await h.snapshot() == before


async def test_bad_purpose_and_anonymous_uploads(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    before = await h.snapshot()
    assert_problem(await h.upload(alice, jpeg(), purpose="Not A Word!"), 422)
    assert_problem(await h.upload(alice, jpeg(), params={"purpose": "x" * 40}), 422)
    assert_problem(await h.upload(None, jpeg()), 401)
    service = quark.bearer(quark.service_token("blog", ("media:write",)))
    assert_problem(await h.client.post(API, files={"file": ("a.jpg", jpeg(), "image/jpeg")}, headers=service), 403)
    assert await h.snapshot() == before


async def test_filename_is_never_a_storage_key(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    media = await h.ready(alice, jpeg(), filename="../../etc/passwd\x00.jpg")
    assert media["filename"] == "passwd.jpg" or "/" not in media["filename"]
    for key in await h.objects():
        assert "passwd" not in key and ".." not in key
    assert not (tmp_path / "etc").exists()


def _strip(width: int, height: int) -> bytes:
    """A one-colour PNG (a few hundred bytes whatever its size): only its dimensions matter."""
    buf = io.BytesIO()
    Image.new("1", (width, height), 1).save(buf, "PNG", optimize=True)
    return buf.getvalue()


@pytest.mark.parametrize("size", [(16_384, 1), (1, 16_384)], ids=["wide", "tall"])
async def test_a_side_over_webps_16383_limit_is_refused_at_upload(quark: QuarkTestEnv, tmp_path: Path,
                                                                   size: tuple[int, int]) -> None:
    """Issue 16.11: WebP stores at most 16383 px per side, so a 16384-px image was accepted, then failed
    in processing. It is a 422 at upload now, and nothing is stored."""
    h = await start(quark, tmp_path)
    alice = h.account()
    before = await h.snapshot()
    body = assert_problem(await h.upload(alice, _strip(*size), filename="strip.png", content_type="image/png"), 422)
    assert "16383" in body["detail"]
    assert await h.snapshot() == before
    # The largest side WebP can hold is accepted and processed.
    done = await h.upload_ok(alice, _strip(16_383, 1), filename="strip.png", content_type="image/png")
    settled = await h.settled(done["id"], alice)
    assert (settled["status"], settled["width"]) == ("ready", 16_383), settled


def test_max_dimension_cannot_be_set_past_webps_limit() -> None:
    from quark_media.settings import MediaSettings
    from quark_sdk.config import ConfigError

    with pytest.raises(ConfigError, match="MAX_DIMENSION"):
        MediaSettings.load(max_dimension=16_384)
    assert MediaSettings.load().max_dimension == 16_383
