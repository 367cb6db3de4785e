"""Getting images in: the streamed upload (checked while it streams) and their processing into variants.

Life of an upload: the file part streams into storage (size-limited, quota-limited) while a copy
goes to a local temp file; the first bytes must be an image signature and no script/markup may
appear anywhere; Pillow then decodes it fully in the processing pool (type, truncation, pixel
limits, trailing data). Only then does a row exist (`uploaded`, event `quark.media.uploaded`).
Processing claims the row (`processing`), makes the WebP variants in the pool, stores them and
marks it `ready` (event `quark.media.processed`) or `failed` (`quark.media.failed`); the raw
upload, which still carries the client's EXIF, is removed either way. A refused upload leaves
no row and no object behind. `recover` restarts work lost to a crash.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from quark_media import imaging
from quark_media.models import Media, Usage
from quark_media.runtime import MediaRuntime
from quark_media.schemas import MediaFailed, MediaProcessed, MediaUploaded
from quark_media.service import (
    MULTIPART_OVERHEAD,
    PURPOSE,
    SNIFF_BYTES,
    VARIANT_NAMES,
    NotAnImage,
    QuotaExceeded,
    _discard,
    _quietly_delete,
    _usage,
    clean_filename,
    now,
    object_prefix,
    storage_errors,
    variant_url,
)
from quark_media.upload import MultipartUpload
from quark_sdk.errors import InvalidInput, NotFound, PayloadTooLarge, QuarkError, ServiceUnavailable
from quark_sdk.outbox import add_event

log = logging.getLogger("quark.media")


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
            info = await rt.run_blocking(imaging.inspect, tmp_path, rt.limits, check=True)
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
