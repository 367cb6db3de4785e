"""Image checks and processing with Pillow: blocking functions, run in the processing pool.

Nothing here trusts a filename or a declared content type. A file is an image when Pillow,
restricted to the four allowed formats, decodes it completely within the pixel limits, and
when nothing but zero padding follows the image's own end marker (which refuses the usual
polyglots: an image with a script appended). The variants are re-encoded from decoded pixels
with no metadata copied across except the colour profile, so EXIF (GPS, camera serial,
thumbnails) and XMP never reach a variant.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import blurhash
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Pillow's own bomb check runs inside Image.open; ours (below) runs first with the configured limits.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ALLOWED_FORMATS: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
VARIANT_CONTENT_TYPE = "image/webp"
# Text that marks a script or markup document hiding in an upload, matched on lower-cased bytes. Each
# pattern is long enough (6+ specific bytes) that compressed image data matches it by chance about once
# in 10^5 10 MB uploads or less; a bare "<svg" (4 bytes) would hit ~2% of them, so SVG is refused by its
# missing image signature instead.
MARKUP = re.compile(rb"<\?php[\s]|<(?:html|body|script|iframe|object|embed)[\s>/]|<!doctype\s+html")
MARKER_OVERLAP = 16
MAX_TRAILING_PADDING = 4096


class ImageRejected(Exception):
    """The upload is not an acceptable image; `kind` picks the HTTP status (type → 415, else 422)."""

    def __init__(self, detail: str, kind: str = "invalid") -> None:
        super().__init__(detail, kind)  # both in args: the exception crosses a process boundary by pickling
        self.detail = detail
        self.kind = kind

    def __str__(self) -> str:
        return self.detail


def sniff_magic(head: bytes) -> str | None:
    """The MIME type the first bytes claim (JPEG, PNG, GIF, WebP), or None: a cheap first gate while streaming."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def find_markup(window: bytes) -> bytes | None:
    """The first script/markup marker in ``window`` (case-insensitive), or None."""
    found = MARKUP.search(window.lower())
    return found.group(0).strip() if found else None


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    max_dimension: int


@dataclass(frozen=True)
class ImageInfo:
    mime_type: str
    width: int  # as stored (before EXIF orientation is applied)
    height: int


def inspect(path: Path, limits: Limits) -> ImageInfo:
    """Decide whether ``path`` is an acceptable image; raises ImageRejected with a reason a client can act on."""
    with path.open("rb") as fh:
        head = fh.read(16)
        if not head:
            raise ImageRejected("the file is empty")
        if sniff_magic(head) is None:
            raise ImageRejected("not a JPEG, PNG, WebP or GIF image", kind="type")
        fh.seek(0)
        info = _decode_check(fh, limits)
        _check_trailer(fh, info.mime_type)
    return info


def _decode_check(fh: IO[bytes], limits: Limits) -> ImageInfo:
    try:
        with Image.open(fh, formats=list(ALLOWED_FORMATS)) as im:
            fmt = im.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise ImageRejected("not a JPEG, PNG, WebP or GIF image", kind="type")
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageRejected("the image has no pixels")
            if width > limits.max_dimension or height > limits.max_dimension or width * height > limits.max_pixels:
                raise ImageRejected(
                    f"the image is {width}x{height} pixels; at most {limits.max_pixels} pixels and "
                    f"{limits.max_dimension} per side are accepted",
                    kind="too_large",
                )
            im.load()  # decodes the first frame completely: a truncated or corrupt file fails here
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"the image is too large to decode safely: {exc}", kind="too_large") from None
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise ImageRejected(f"not a decodable image: {_short(exc)}", kind="type") from None
    except (OSError, ValueError, EOFError, struct.error, MemoryError, IndexError, TypeError) as exc:
        raise ImageRejected(f"the image is truncated or corrupt: {_short(exc)}") from None
    return ImageInfo(ALLOWED_FORMATS[fmt], width, height)


def _short(exc: BaseException) -> str:
    return str(exc)[:160] or type(exc).__name__


def _check_trailer(fh: IO[bytes], mime_type: str) -> None:
    """Refuse data after the image's end marker (beyond a little zero padding): that is where polyglots hide."""
    fh.seek(0, io.SEEK_END)
    size = fh.tell()
    if mime_type == "image/webp":
        fh.seek(4)
        declared = struct.unpack("<I", fh.read(4))[0] + 8
        if size > declared + (declared & 1) and _has_data(fh, declared, size):
            raise ImageRejected("data follows the end of the WebP image", kind="type")
        return
    tail_len = min(size, 64 * 1024)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    stripped = tail.rstrip(b"\x00")
    padding = len(tail) - len(stripped)
    if padding > MAX_TRAILING_PADDING:
        raise ImageRejected("the image ends with a long run of padding", kind="type")
    if mime_type == "image/jpeg":
        ok = stripped.endswith(b"\xff\xd9")
    elif mime_type == "image/png":
        ok = len(stripped) >= 12 and stripped[-12:-4] == b"\x00\x00\x00\x00IEND"
    else:  # GIF
        ok = stripped.endswith(b"\x3b")
    if not ok:
        raise ImageRejected("data follows the end of the image (or the image is truncated)", kind="type")


def _has_data(fh: IO[bytes], start: int, end: int) -> bool:
    fh.seek(start)
    rest = fh.read(min(end - start, MAX_TRAILING_PADDING + 1))
    return len(rest) > MAX_TRAILING_PADDING or rest.strip(b"\x00") != b""


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    name: str
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Processed:
    width: int  # after orientation
    height: int
    variants: list[Variant]
    blurhash: str
    dominant_color: str


@dataclass(frozen=True)
class VariantSpec:
    thumb: int
    medium: int
    quality: int
    method: int


def process(path: Path, limits: Limits, spec: VariantSpec, *, verified: bool = False) -> Processed:
    """Decode (first frame), apply EXIF orientation, drop all metadata, and encode the three WebP variants.

    ``verified``: :func:`inspect` already accepted this very file (the upload path), so it is not
    decoded a second time just to be checked; a source read back from storage is checked again.
    """
    if not verified:
        inspect(path, limits)
    try:
        with Image.open(path, formats=list(ALLOWED_FORMATS)) as src:
            src.seek(0)
            icc = src.info.get("icc_profile")
            oriented = ImageOps.exif_transpose(src)
            pixels = _normalise_mode(oriented)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageRejected(f"the image could not be decoded: {_short(exc)}") from None
    pixels.info = {}  # nothing from the source's metadata travels on
    width, height = pixels.size
    original = _encode(pixels, "original", spec, icc)
    medium_img = _fit(pixels, spec.medium)
    medium = _encode(medium_img, "medium", spec, icc)
    thumb_img = _fit(medium_img, spec.thumb)
    thumb = _encode(thumb_img, "thumb", spec, icc)
    small = thumb_img.convert("RGB")
    small.thumbnail((24, 24), Image.Resampling.BILINEAR)
    rows = [[small.getpixel((x, y)) for x in range(small.width)] for y in range(small.height)]
    hash_ = blurhash.encode(rows, components_x=4, components_y=3)
    r, g, b = small.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))  # type: ignore[misc]
    return Processed(width, height, [thumb, medium, original], hash_, f"#{r:02x}{g:02x}{b:02x}")


def _normalise_mode(im: Image.Image) -> Image.Image:
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        return im.convert("RGBA")
    return im.convert("RGB") if im.mode != "RGB" else im.copy()


def _fit(im: Image.Image, box: int) -> Image.Image:
    """A copy whose longer side is at most ``box`` (never enlarged)."""
    if max(im.size) <= box:
        return im
    out = im.copy()
    out.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return out


def _encode(im: Image.Image, name: str, spec: VariantSpec, icc: bytes | None) -> Variant:
    buf = io.BytesIO()
    options: dict[str, object] = {"quality": spec.quality, "method": spec.method}
    if icc:
        options["icc_profile"] = icc
    im.save(buf, format="WEBP", exif=b"", xmp=b"", **options)
    return Variant(name, buf.getvalue(), im.width, im.height)
