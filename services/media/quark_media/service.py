"""Business logic of the media service: plain Python, no HTTP types.

Life of an upload: the file part streams into storage (size-limited, quota-limited) while a copy
goes to a local temp file; the first bytes must be an image signature and no script/markup may
appear anywhere; Pillow then decodes it fully in the processing pool (type, truncation, pixel
limits, trailing data). Only then does a row exist (`uploaded`, event `quark.media.uploaded`).
Processing claims the row (`processing`), makes the WebP variants in the pool, stores them and
marks it `ready` (event `quark.media.processed`) or `failed` (`quark.media.failed`); the raw
upload, which still carries the client's EXIF, is removed either way. A refused upload leaves
no row and no object behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import urllib3
from minio.error import S3Error
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_media import imaging
from quark_media.models import Media, Usage
from quark_media.runtime import MediaRuntime
from quark_media.schemas import (
    AuthUserDeleted,
    MediaDeleted,
    MediaFailed,
    MediaOut,
    MediaPage,
    MediaProcessed,
    MediaUploaded,
    PostMedia,
    ProfileUpdated,
    UsageOut,
    VariantOut,
)
from quark_media.upload import MultipartUpload
from quark_sdk.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuarkError,
    ServiceUnavailable,
)
from quark_sdk.outbox import add_event

log = logging.getLogger("quark.media")

API_PREFIX = "/api/v1/media"
VARIANT_NAMES = ("thumb", "medium", "original")
PURPOSE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and small fields around the file
SNIFF_BYTES = 16


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Object storage unreachable or failing: a 503 the client may retry, not a 500."""
    try:
        yield
    except (S3Error, urllib3.exceptions.HTTPError) as exc:
        log.warning("object storage error: %s", exc)
        raise ServiceUnavailable("object storage is unavailable; retry shortly", retry_after=2) from None


class QuotaExceeded(QuarkError):
    status, code, title = 403, "quota-exceeded", "Storage quota exceeded"


class NotAnImage(QuarkError):
    """The file part is not an acceptable image (judged by its bytes). 422, not 415: the request itself
    (multipart/form-data) is in a supported format; its content is what cannot be processed."""

    status, code, title = 422, "unsupported-image", "Not an acceptable image"


def now() -> datetime:
    return datetime.now(UTC)


def parse_media_id(value: str) -> uuid.UUID:
    """A media id from a path or event; anything that is not one is simply not found."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise NotFound("no such media") from None


def _try_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        return None


def object_prefix(owner_id: uuid.UUID, media_id: uuid.UUID) -> str:
    return f"{owner_id}/{media_id}/"


def _discard(path: Path) -> None:
    """Remove a temp file (a local unlink: cheap enough to do on the loop)."""
    with contextlib.suppress(OSError):
        path.unlink()


def clean_filename(name: str | None) -> str | None:
    """The client's filename as a label only: last path segment, no control characters, bounded."""
    if not name:
        return None
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and not ("\ud800" <= ch <= "\udfff")).strip()
    return base[:255] or None


# --------------------------------------------------------------------------- representation


def variant_url(rt: MediaRuntime, media_id: uuid.UUID, name: str) -> str:
    return f"{rt.settings.public_base_url}{API_PREFIX}/{media_id}/variants/{name}"


def to_out(rt: MediaRuntime, media: Media, *, private: bool) -> MediaOut:
    variants = (
        {
            name: VariantOut(
                url=variant_url(rt, media.id, name),
                width=v["width"],
                height=v["height"],
                size=v["size"],
                content_type=v["content_type"],
            )
            for name, v in (media.variants or {}).items()
        }
        if media.status == "ready"
        else {}
    )
    return MediaOut(
        id=str(media.id),
        owner_id=str(media.owner_id),
        purpose=media.purpose,
        status=media.status,
        mime_type=media.mime_type,
        size=media.size,
        width=media.width,
        height=media.height,
        blurhash=media.blurhash,
        dominant_color=media.dominant_color,
        variants=variants,
        attached=media.attached_at is not None,
        created_at=media.created_at,
        updated_at=media.updated_at,
        filename=media.filename if private else None,
        error=media.error if private else None,
    )


# --------------------------------------------------------------------------- upload


class _Gate:
    """The upload's bytes on their way to storage: signature check, markup scan, and a tee to a temp file."""

    def __init__(self, chunks: AsyncIterator[bytes], tmp: IO[bytes]) -> None:
        self._chunks = chunks
        self._tmp = tmp
        self._head: list[bytes] = []
        self._tail = b""
        self.mime_type = ""
        self.size = 0

    async def prime(self) -> None:
        """Read enough to check the signature before anything is stored."""
        have = 0
        async for chunk in self._chunks:
            if chunk:
                self._head.append(chunk)
                have += len(chunk)
            if have >= SNIFF_BYTES:
                break
        head = b"".join(self._head)
        if not head:
            raise InvalidInput("the file is empty", field="file")
        mime = imaging.sniff_magic(head)
        if mime is None:
            raise NotAnImage("the file is not a JPEG, PNG, WebP or GIF image (judged by its content)")
        self.mime_type = mime

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self._head:
            await self._pass(chunk)
            yield chunk
        self._head.clear()
        async for chunk in self._chunks:
            if chunk:
                await self._pass(chunk)
                yield chunk

    async def _pass(self, chunk: bytes) -> None:
        window = self._tail + chunk
        marker = imaging.find_markup(window)
        if marker is not None:
            raise NotAnImage(f"the file contains {marker.decode()!r}: scripts and markup are refused")
        self._tail = window[-imaging.MARKER_OVERLAP :]
        self.size += len(chunk)
        await asyncio.to_thread(self._tmp.write, chunk)


def _rejection(exc: imaging.ImageRejected) -> QuarkError:
    if exc.kind == "type":
        return NotAnImage(exc.detail)
    return InvalidInput(exc.detail, field="file")


async def _usage(session: AsyncSession, owner: uuid.UUID) -> tuple[int, int]:
    row = await session.get(Usage, owner)
    return (row.count, row.bytes) if row is not None else (0, 0)


def _check_quota(rt: MediaRuntime, count: int, used: int, incoming: int = 0) -> None:
    s = rt.settings
    if s.quota_max_count and count + 1 > s.quota_max_count:
        raise QuotaExceeded(
            f"you already have {count} media items; the limit is {s.quota_max_count}",
            extra={"limit_count": s.quota_max_count, "count": count},
        )
    if s.quota_max_bytes and used + max(incoming, 1) > s.quota_max_bytes:
        raise QuotaExceeded(
            f"this upload would exceed your {s.quota_max_bytes}-byte storage quota",
            extra={"limit_bytes": s.quota_max_bytes, "bytes": used},
        )


async def upload(
    rt: MediaRuntime, owner: uuid.UUID, body: MultipartUpload, *, purpose: str | None, declared_length: int | None
) -> Media:
    """Accept one upload (see the module docstring); returns the new `uploaded` row."""
    s = rt.settings
    if s.upload_rate_limit:
        await rt.limiter.check(
            f"upload:{owner}",
            limit=s.upload_rate_limit,
            window=s.upload_rate_window,
            detail=f"at most {s.upload_rate_limit} uploads per {s.upload_rate_window:g}s",
        )
    if declared_length is not None and declared_length > s.max_upload_bytes + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"uploads are limited to {s.max_upload_bytes} bytes", extra={"max_size": s.max_upload_bytes}
        )
    if not await rt.ensure_storage():
        raise ServiceUnavailable("object storage is unavailable; retry shortly", retry_after=5)
    async with rt.db.session() as session:
        count, used = await _usage(session, owner)
    _check_quota(rt, count, used)
    await body.start()
    purpose = purpose if purpose is not None else body.fields.get("purpose") or None
    if purpose is not None and not PURPOSE.fullmatch(purpose):
        raise InvalidInput("purpose must be a short lower-case word (e.g. avatar, post)", field="purpose")
    limit = s.max_upload_bytes
    if s.quota_max_bytes:
        limit = min(limit, s.quota_max_bytes - used)
    media_id = uuid.uuid4()
    key = object_prefix(owner, media_id) + "source"
    fd, name = tempfile.mkstemp(prefix="quark-media-", suffix=".upload")
    tmp_path = Path(name)
    handed_over = False
    try:
        with os.fdopen(fd, "wb") as tmp:
            gate = _Gate(body.file_chunks(), tmp)
            await gate.prime()
            try:
                with storage_errors():
                    stored = await rt.storage.put(key, gate.stream(), content_type=gate.mime_type, max_size=limit)
            except PayloadTooLarge:
                if limit < s.max_upload_bytes:
                    raise QuotaExceeded(
                        f"this upload would exceed your {s.quota_max_bytes}-byte storage quota",
                        extra={"limit_bytes": s.quota_max_bytes, "bytes": used},
                    ) from None
                raise PayloadTooLarge(
                    f"uploads are limited to {s.max_upload_bytes} bytes", extra={"max_size": s.max_upload_bytes}
                ) from None
        try:
            info = await rt.run_blocking(imaging.inspect, tmp_path, rt.limits)
            media = await _record_upload(
                rt, owner, media_id, key, stored.size, info.mime_type, purpose, clean_filename(body.filename)
            )
        except BaseException as exc:
            await _quietly_delete(rt, [key])
            if isinstance(exc, imaging.ImageRejected):
                raise _rejection(exc) from None
            raise
        handed_over = True
        rt.spawn(process_media(rt, media_id, tmp_path), name=f"media-process-{media_id}")
        return media
    finally:
        if not handed_over:
            _discard(tmp_path)


async def _record_upload(
    rt: MediaRuntime,
    owner: uuid.UUID,
    media_id: uuid.UUID,
    key: str,
    size: int,
    mime_type: str,
    purpose: str | None,
    filename: str | None,
) -> Media:
    async with rt.db.transaction() as session:
        await session.execute(pg_insert(Usage).values(owner_id=owner).on_conflict_do_nothing())
        usage = (await session.execute(select(Usage).where(Usage.owner_id == owner).with_for_update())).scalar_one()
        _check_quota(rt, usage.count, usage.bytes, size)  # again, under the lock: concurrent uploads
        usage.count += 1
        usage.bytes += size
        ts = now()
        media = Media(
            id=media_id,
            owner_id=owner,
            purpose=purpose,
            status="uploaded",
            mime_type=mime_type,
            size=size,
            filename=filename,
            source_key=key,
            variants={},
            attempts=0,
            created_at=ts,
            updated_at=ts,
        )
        session.add(media)
        await add_event(
            session,
            MediaUploaded(media_id=str(media_id), owner_id=str(owner), purpose=purpose, mime_type=mime_type, size=size),
            subject=str(media_id),
        )
    return media


async def _quietly_delete(rt: MediaRuntime, keys: Iterable[str]) -> None:
    for key in keys:
        try:
            await rt.storage.delete(key)
        except Exception:
            log.warning("could not delete object %s", key, exc_info=True)


# --------------------------------------------------------------------------- processing


async def process_media(rt: MediaRuntime, media_id: uuid.UUID, local: Path | None = None) -> str:
    """Claim an `uploaded` row and make its variants; returns the outcome (for logs and tests)."""
    try:
        return await _process(rt, media_id, local)
    finally:
        if local is not None:
            _discard(local)


async def _process(rt: MediaRuntime, media_id: uuid.UUID, local: Path | None) -> str:
    async with rt.db.transaction() as session:
        media = (
            await session.execute(
                update(Media)
                .where(Media.id == media_id, Media.status == "uploaded")
                .values(status="processing", attempts=Media.attempts + 1, processing_started_at=now(), updated_at=now())
                .returning(Media)
            )
        ).scalar_one_or_none()
    if media is None:
        return "not-claimed"
    owner, source = media.owner_id, media.source_key
    path, downloaded = local, False
    written: list[str] = []
    try:
        if path is None:
            if source is None:
                raise imaging.ImageRejected("the upload is missing")
            path, downloaded = await _download(rt, source), True
        work = functools.partial(imaging.process, verified=local is not None)  # picklable: runs in a worker
        result = await rt.run_blocking(work, path, rt.limits, rt.spec)
        variants: dict[str, Any] = {}
        for v in result.variants:
            key = object_prefix(owner, media_id) + f"{v.name}.webp"
            written.append(key)
            stored = await rt.storage.put(key, v.data, content_type=imaging.VARIANT_CONTENT_TYPE)
            variants[v.name] = {
                "key": key,
                "width": v.width,
                "height": v.height,
                "size": stored.size,
                "etag": stored.etag,
                "content_type": imaging.VARIANT_CONTENT_TYPE,
            }
    except asyncio.CancelledError:
        raise
    except imaging.ImageRejected as exc:
        await _quietly_delete(rt, written)
        return await _fail(rt, media_id, exc.detail)
    except Exception as exc:
        await _quietly_delete(rt, written)
        log.warning("processing media %s failed (attempt %d)", media_id, media.attempts, exc_info=True)
        if media.attempts >= rt.settings.processing_attempts:
            return await _fail(rt, media_id, f"processing failed: {type(exc).__name__}")
        async with rt.db.transaction() as session:
            await session.execute(
                update(Media)
                .where(Media.id == media_id, Media.status == "processing")
                .values(status="uploaded", processing_started_at=None, updated_at=now())
            )
        return "retry"
    finally:
        if downloaded and path is not None:
            _discard(path)
    async with rt.db.transaction() as session:
        row = (await session.execute(select(Media).where(Media.id == media_id).with_for_update())).scalar_one_or_none()
        if row is None or row.status != "processing":
            ready = False  # deleted (or reclaimed) meanwhile: what was written is nobody's
        else:
            ready = True
            row.status, row.variants = "ready", variants
            row.width, row.height = result.width, result.height
            row.blurhash, row.dominant_color = result.blurhash, result.dominant_color
            row.source_key, row.error, row.updated_at = None, None, now()
            await add_event(
                session,
                MediaProcessed(
                    media_id=str(media_id),
                    owner_id=str(owner),
                    purpose=row.purpose,
                    variants={name: variant_url(rt, media_id, name) for name in VARIANT_NAMES if name in variants},
                    width=result.width,
                    height=result.height,
                    blurhash=result.blurhash,
                    dominant_color=result.dominant_color,
                ),
                subject=str(media_id),
            )
    if not ready:
        await _quietly_delete(rt, written)
        return "gone"
    if source is not None:
        await _quietly_delete(rt, [source])  # the raw upload still carries the client's metadata
    return "ready"


async def _download(rt: MediaRuntime, key: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="quark-media-", suffix=".source")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in await rt.storage.open(key):
                await asyncio.to_thread(fh.write, chunk)
    except NotFound:
        _discard(path)
        raise imaging.ImageRejected("the upload is missing from storage") from None
    except BaseException:
        _discard(path)
        raise
    return path


async def _fail(rt: MediaRuntime, media_id: uuid.UUID, reason: str) -> str:
    async with rt.db.transaction() as session:
        row = (await session.execute(select(Media).where(Media.id == media_id).with_for_update())).scalar_one_or_none()
        if row is None or row.status != "processing":
            return "gone"
        source = row.source_key
        row.status, row.error, row.source_key, row.updated_at = "failed", reason[:300], None, now()
        await add_event(
            session,
            MediaFailed(media_id=str(media_id), owner_id=str(row.owner_id), purpose=row.purpose, reason=reason[:300]),
            subject=str(media_id),
        )
    if source is not None:
        await _quietly_delete(rt, [source])
    return "failed"


async def recover(rt: MediaRuntime, *, settle: timedelta = timedelta(seconds=10)) -> int:
    """Restart work lost to a crash: `uploaded` rows nobody claimed, `processing` rows past the timeout."""
    ts = now()
    async with rt.db.transaction() as session:
        stale = await session.scalars(
            update(Media)
            .where(
                Media.status == "processing",
                Media.processing_started_at < ts - timedelta(seconds=rt.settings.processing_timeout),
            )
            .values(status="uploaded", processing_started_at=None, updated_at=ts)
            .returning(Media.id)
        )
        ids = list(stale.all())
        waiting = await session.scalars(
            select(Media.id)
            .where(Media.status == "uploaded", Media.updated_at < ts - settle)
            .order_by(Media.updated_at)
            .limit(100)
        )
        ids += [i for i in waiting.all() if i not in ids]
    for media_id in ids:
        await process_media(rt, media_id)
    return len(ids)


# --------------------------------------------------------------------------- reading


def _visible(media: Media, viewer: uuid.UUID | None, admin: bool) -> bool:
    return media.status == "ready" or admin or viewer == media.owner_id


async def get_media(
    rt: MediaRuntime, session: AsyncSession, media_id: str, *, viewer: uuid.UUID | None, admin: bool
) -> MediaOut:
    """Metadata: anyone may see ready media (ids are unguessable); the rest only its owner or an admin."""
    media = await session.get(Media, parse_media_id(media_id))
    if media is None or not _visible(media, viewer, admin):
        raise NotFound("no such media")
    return to_out(rt, media, private=admin or viewer == media.owner_id)


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"m{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("m"):
            raise ValueError
        value = int(raw[1:])
        if value < 0 or value > 2**62:
            raise ValueError
        return value
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("invalid cursor", field="cursor") from None


async def list_media(
    rt: MediaRuntime,
    session: AsyncSession,
    owner: uuid.UUID,
    *,
    limit: int | None,
    cursor: str | None,
    status: str | None,
) -> MediaPage:
    """The owner's media, newest first, keyset-paginated."""
    s = rt.settings
    size = min(limit or s.page_size_default, s.page_size_max)
    stmt = select(Media).where(Media.owner_id == owner)
    if status is not None:
        stmt = stmt.where(Media.status == status)
    if cursor:
        stmt = stmt.where(Media.seq < _decode_cursor(cursor))
    rows = list((await session.scalars(stmt.order_by(Media.seq.desc()).limit(size + 1))).all())
    more = len(rows) > size
    rows = rows[:size]
    return MediaPage(
        items=[to_out(rt, m, private=True) for m in rows],
        next_cursor=_encode_cursor(rows[-1].seq) if more and rows else None,
    )


async def usage(rt: MediaRuntime, session: AsyncSession, owner: uuid.UUID) -> UsageOut:
    count, used = await _usage(session, owner)
    s = rt.settings
    return UsageOut(count=count, bytes=used, max_count=s.quota_max_count or None, max_bytes=s.quota_max_bytes or None)


@dataclass(frozen=True)
class Delivery:
    """How to answer a variant request: a redirect, or a stream of the object's bytes."""

    etag: str
    size: int
    content_type: str
    redirect: str | None = None
    chunks: AsyncIterator[bytes] | None = None
    not_modified: bool = False


def etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match with weak comparison: `*` or any listed tag equal to ours."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


async def deliver_variant(
    rt: MediaRuntime, session: AsyncSession, media_id: str, name: str, *, if_none_match: str | None, body: bool
) -> Delivery:
    if name not in VARIANT_NAMES:
        raise NotFound("no such variant (thumb, medium or original)")
    media = await session.get(Media, parse_media_id(media_id))
    if media is None or media.status != "ready" or name not in (media.variants or {}):
        raise NotFound("no such media")
    v = media.variants[name]
    etag = f'"{v["etag"]}"'
    if etag_matches(if_none_match, etag):
        return Delivery(etag=etag, size=v["size"], content_type=v["content_type"], not_modified=True)
    with storage_errors():
        if rt.settings.delivery == "auto":
            url = await rt.storage.presigned_url(v["key"], timedelta(seconds=rt.settings.presign_ttl))
            if url is not None:
                return Delivery(etag=etag, size=v["size"], content_type=v["content_type"], redirect=url)
        chunks = await rt.storage.open(v["key"]) if body else None  # NotFound before any byte: a clean 404
    return Delivery(etag=etag, size=v["size"], content_type=v["content_type"], chunks=chunks)


# --------------------------------------------------------------------------- attach, delete


async def attach(
    rt: MediaRuntime, session: AsyncSession, media_id: str, *, actor: uuid.UUID | None, admin: bool, service: bool
) -> MediaOut:
    """Mark media as in use so the orphan sweep keeps it (owner, admin or a module with a service token)."""
    async with session.begin():
        media = (
            await session.execute(select(Media).where(Media.id == parse_media_id(media_id)).with_for_update())
        ).scalar_one_or_none()
        if media is None or not (service or admin or actor == media.owner_id):
            raise NotFound("no such media")
        if media.status == "failed":
            raise InvalidInput("failed media cannot be attached", field="media_id")
        if media.attached_at is None:
            media.attached_at = now()
    return to_out(rt, media, private=True)


async def _mark_attached(session: AsyncSession, owner: str, media_ids: Iterable[str]) -> None:
    owner_id = _try_uuid(owner)
    ids = [i for i in (_try_uuid(m) for m in media_ids) if i is not None]
    if owner_id is None or not ids:
        return
    await session.execute(
        update(Media)
        .where(Media.id.in_(ids), Media.owner_id == owner_id, Media.attached_at.is_(None))
        .values(attached_at=now())
    )


async def _remove_rows(session: AsyncSession, rows: list[Media], reason: str) -> list[str]:
    """Delete rows, give their bytes back to the quota and publish `quark.media.deleted`; returns object prefixes."""
    prefixes = []
    for media in rows:
        await session.delete(media)
        await session.execute(
            update(Usage)
            .where(Usage.owner_id == media.owner_id)
            .values(count=Usage.count - 1, bytes=Usage.bytes - media.size)
        )
        await add_event(
            session,
            MediaDeleted(media_id=str(media.id), owner_id=str(media.owner_id), reason=reason),
            subject=str(media.id),
        )
        prefixes.append(object_prefix(media.owner_id, media.id))
    return prefixes


async def _delete_objects(rt: MediaRuntime, prefixes: Iterable[str]) -> None:
    for prefix in prefixes:
        try:
            await rt.storage.delete_prefix(prefix)
        except Exception:
            log.warning("could not delete objects under %s", prefix, exc_info=True)


async def delete_media(
    rt: MediaRuntime, session: AsyncSession, media_id: str, *, actor: uuid.UUID, admin: bool
) -> None:
    """Owner or admin deletes; rows and event in one transaction, then the objects."""
    async with session.begin():
        media = (
            await session.execute(select(Media).where(Media.id == parse_media_id(media_id)).with_for_update())
        ).scalar_one_or_none()
        if media is None or not _visible(media, actor, admin):
            raise NotFound("no such media")
        if not admin and media.owner_id != actor:
            raise PermissionDenied("only the owner or an admin may delete media")
        prefixes = await _remove_rows(session, [media], "owner" if media.owner_id == actor else "admin")
    await _delete_objects(rt, prefixes)


async def sweep_orphans(rt: MediaRuntime, *, batch: int = 100) -> int:
    """Delete media never attached within `orphan_ttl`; returns how many went."""
    ttl = rt.settings.orphan_ttl
    if ttl == 0:
        return 0
    removed = 0
    while True:
        async with rt.db.transaction() as session:
            rows = list(
                (
                    await session.scalars(
                        select(Media)
                        .where(Media.attached_at.is_(None), Media.created_at < now() - timedelta(seconds=ttl))
                        .order_by(Media.created_at)
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
            )
            prefixes = await _remove_rows(session, rows, "orphan")
        await _delete_objects(rt, prefixes)
        removed += len(rows)
        if len(rows) < batch:
            return removed


# --------------------------------------------------------------------------- consumed events


async def apply_user_deleted(rt: MediaRuntime, session: AsyncSession, event: AuthUserDeleted) -> None:
    """An account is gone: its media, objects and usage go too (one `quark.media.deleted` per item)."""
    rows = list((await session.scalars(select(Media).where(Media.owner_id == event.user_id).with_for_update())).all())
    await _remove_rows(session, rows, "account_deleted")
    await session.execute(delete(Usage).where(Usage.owner_id == event.user_id))
    # Idempotent, so a retry after a failed commit is harmless; also catches objects of in-flight uploads.
    await rt.storage.delete_prefix(f"{event.user_id}/")


async def apply_post_media(session: AsyncSession, event: PostMedia) -> None:
    await _mark_attached(session, event.author_id, event.media_ids)


async def apply_profile_updated(session: AsyncSession, event: ProfileUpdated) -> None:
    if event.avatar is not None:
        await _mark_attached(session, event.user_id, [event.avatar.media_id])
