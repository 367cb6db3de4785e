"""Small pure pieces: signature sniffing, markup scanning across chunks, ETag matching, filenames, settings."""

import io
from pathlib import Path

import pytest
from media_testkit import gif, jpeg, png, webp
from PIL import Image

from quark_media import imaging, ingest, service
from quark_media.runtime import storage_for
from quark_media.settings import MediaSettings
from quark_sdk.config import ConfigError
from quark_sdk.storage import LocalStorage, S3Storage


def test_sniff_magic() -> None:
    assert imaging.sniff_magic(jpeg(8, 8)[:16]) == "image/jpeg"
    assert imaging.sniff_magic(png(8, 8)[:16]) == "image/png"
    assert imaging.sniff_magic(webp(8, 8)[:16]) == "image/webp"
    assert imaging.sniff_magic(gif(8, 8)[:16]) == "image/gif"
    for bad in (b"", b"<?php", b"RIFF\x00\x00\x00\x00WAVE", b"BM", b"\x00\x00\x01\x00"):
        assert imaging.sniff_magic(bad) is None


async def test_markup_is_found_across_chunk_boundaries(tmp_path: Path) -> None:
    data = jpeg(32, 32, gps=False)

    async def chunks():  # type: ignore[no-untyped-def]
        yield data
        yield b"<scr"
        yield b"IPT>"

    with (tmp_path / "t").open("wb") as fh:
        gate = ingest._Gate(chunks(), fh)
        await gate.prime()
        with pytest.raises(Exception, match="script"):
            async for _ in gate.stream():
                pass


def test_etag_matching() -> None:
    tag = '"abc"'
    assert service.etag_matches('"abc"', tag)
    assert service.etag_matches('W/"abc"', tag)
    assert service.etag_matches('"x", "abc"', tag)
    assert service.etag_matches("*", tag)
    assert not service.etag_matches('"abcd"', tag)
    assert not service.etag_matches(None, tag)
    assert not service.etag_matches("", tag)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\a.png", "a.png"),
        ("a\x00b\nc.jpg", "abc.jpg"),
        ("", None),
        (None, None),
        ("/", None),
        ("x" * 400, "x" * 255),
    ],
)
def test_clean_filename(raw: str | None, clean: str | None) -> None:
    assert service.clean_filename(raw) == clean


def test_variants_strip_metadata_keep_alpha_and_first_gif_frame(tmp_path: Path) -> None:
    limits = imaging.Limits(40_000_000, 16_384)
    spec = imaging.VariantSpec(320, 1280, 80, 4)
    src = tmp_path / "a.png"
    src.write_bytes(png(500, 400))
    result = imaging.process(src, limits, spec)
    assert [v.name for v in result.variants] == ["thumb", "medium", "original"]
    original = Image.open(io.BytesIO(result.variants[2].data))
    assert original.mode == "RGBA" and original.size == (500, 400)
    g = tmp_path / "a.gif"
    g.write_bytes(gif(50, 40, frames=4))
    first = imaging.process(g, limits, spec).variants[2]
    assert getattr(Image.open(io.BytesIO(first.data)), "n_frames", 1) == 1


def test_storage_setting(tmp_path: Path) -> None:
    local = storage_for(MediaSettings.load(data_dir=tmp_path))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "media").resolve()
    s3 = storage_for(MediaSettings.load(storage_url="s3://k:s@minio:9000/quark-media?secure=false"))
    assert isinstance(s3, S3Storage) and s3.bucket == "quark-media"
    with pytest.raises(ValueError, match="unsupported storage URL"):
        storage_for(MediaSettings.load(storage_url="ftp://x/y"))
    with pytest.raises(ConfigError, match="QUARK_MEDIA_DELIVERY"):
        MediaSettings.load(delivery="teleport")
