"""Helpers for the media service's tests: images made with Pillow on the spot, uploads, looking inside.

Nothing is downloaded: every test image (including the hostile ones) is generated here.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import func, select, text

from quark_media.app import module
from quark_media.runtime import MediaRuntime
from quark_sdk.events import CloudEvent, stream_for, subject_for
from quark_sdk.outbox import outbox_table
from quark_sdk.testing import QuarkTestEnv, RunningModule, eventually
from quark_sdk.testing import assert_problem as assert_problem  # one definition, re-exported

API = "/api/v1/media"
DURABLES = {"moderation": "media-accounts", "auth": "media-accounts", "post": "media-usage", "user": "media-usage"}
GPS_LAT = (52.0, 31.0, 12.0)


@dataclass
class Account:
    user_id: uuid.UUID
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.user_id)


# --------------------------------------------------------------------------- images


def exif_with_gps(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "QuarkCam"  # Make
    exif[0x0110] = "Model-GPS-Leak"  # Model
    if orientation is not None:
        exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: GPS_LAT, 3: "E", 4: (13.0, 24.0, 17.0)}
    return exif.tobytes()


def gradient(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """A non-trivial picture (so encoders do real work), cheap to make."""
    base = Image.linear_gradient("L").resize((w, h))
    img = Image.merge("RGB", (base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.new("L", (w, h), 90)))
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(base)  # real transparency, so encoders keep the alpha channel
        return img
    return img.convert(mode) if mode != "RGB" else img


def jpeg(w: int = 640, h: int = 480, *, gps: bool = True, orientation: int | None = None, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    kw: dict[str, Any] = {"quality": quality}
    if gps:
        kw["exif"] = exif_with_gps(orientation)
    gradient(w, h).save(buf, "JPEG", **kw)
    return buf.getvalue()


def png(w: int = 400, h: int = 300, *, gps: bool = True, alpha: bool = True) -> bytes:
    buf = io.BytesIO()
    img = gradient(w, h, "RGBA" if alpha else "RGB")
    kw: dict[str, Any] = {}
    if gps:
        kw["exif"] = exif_with_gps()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def webp(w: int = 400, h: int = 300, *, gps: bool = True) -> bytes:
    buf = io.BytesIO()
    kw: dict[str, Any] = {"quality": 80}
    if gps:
        kw["exif"] = exif_with_gps()
    gradient(w, h).save(buf, "WEBP", **kw)
    return buf.getvalue()


def gif(w: int = 200, h: int = 150, frames: int = 3) -> bytes:
    imgs = [Image.new("P", (w, h), i * 40) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, "GIF", save_all=True, append_images=imgs[1:], duration=100, loop=0)
    return buf.getvalue()


def bomb_png(side: int = 20_000) -> bytes:
    """A tiny PNG that decodes to side² pixels: a decompression bomb."""
    buf = io.BytesIO()
    Image.new("1", (side, side), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def has_gps(data: bytes) -> bool:
    """True if the image carries EXIF GPS, or any EXIF/XMP block at all, or our marker strings."""
    img = Image.open(io.BytesIO(data))
    exif = img.getexif()
    if 0x8825 in exif or exif.get_ifd(0x8825):
        return True
    return b"Exif" in data or b"Model-GPS-Leak" in data or b"QuarkCam" in data or "xmp" in img.info


# --------------------------------------------------------------------------- harness


class MediaHarness:
    """One running media service, ways to upload and to feed it events, and ways to look inside."""

    def __init__(self, quark: QuarkTestEnv, svc: RunningModule) -> None:
        self.quark = quark
        self.svc = svc
        self.client: httpx.AsyncClient = svc.client

    @property
    def rt(self) -> MediaRuntime:
        return self.svc.ctx.runtime

    def account(self, *, roles: tuple[str, ...] = ("user",), user_id: uuid.UUID | None = None) -> Account:
        uid = user_id or uuid.uuid4()
        token = self.quark.user_token(str(uid), username=f"u{uid.hex[:8]}", roles=roles)
        return Account(uid, self.quark.bearer(token))

    async def upload(
        self,
        who: Account | None,
        data: bytes | AsyncIterator[bytes],
        *,
        filename: str = "photo.jpg",
        content_type: str = "image/jpeg",
        purpose: str | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        files = {"file": (filename, data, content_type)}
        form = {"purpose": purpose} if purpose else None
        return await self.client.post(
            API,
            files=files,
            data=form,
            params=params,  # type: ignore[arg-type]
            headers=who.headers if who else None,
        )

    async def upload_ok(self, who: Account, data: bytes | None = None, **kw: Any) -> dict[str, Any]:
        resp = await self.upload(who, data if data is not None else jpeg(), **kw)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    async def settled(self, media_id: str, who: Account) -> dict[str, Any]:
        """Wait until processing ended (ready or failed) and return the metadata."""

        async def probe() -> dict[str, Any] | None:
            resp = await self.client.get(f"{API}/{media_id}", headers=who.headers)
            body = resp.json()
            return dict(body) if resp.status_code == 200 and body["status"] in ("ready", "failed") else None

        return dict(await eventually(probe, timeout=30, what=f"media {media_id} processed"))

    async def ready(self, who: Account, data: bytes | None = None, **kw: Any) -> dict[str, Any]:
        media = await self.upload_ok(who, data, **kw)
        done = await self.settled(media["id"], who)
        assert done["status"] == "ready", done
        return done

    async def fetch(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, **kw)

    # -- events in ---------------------------------------------------------------------------

    async def publish(self, type_name: str, data: dict[str, Any]) -> CloudEvent:
        bus = self.svc.ctx.bus
        assert bus is not None
        domain = type_name.split(".")[1]
        event = CloudEvent(
            id=str(uuid.uuid4()), source=f"quark/{domain}", type=type_name, time=datetime.now(UTC), data=data
        )
        await bus.ensure_stream(domain)
        await bus.js.publish(subject_for(type_name, bus.namespace), event.to_bytes(), headers={"Nats-Msg-Id": event.id})
        return event

    async def consumed(self, domain: str) -> None:
        bus = self.svc.ctx.bus
        assert bus is not None
        stream = stream_for(domain, bus.namespace)

        async def done() -> bool:
            info = await bus.js.stream_info(stream)
            try:
                consumer = await bus.js.consumer_info(stream, DURABLES[domain])
            except Exception:
                return False
            return (
                consumer.ack_floor.stream_seq >= info.state.last_seq
                and consumer.num_ack_pending == 0
                and consumer.num_pending == 0
            )

        await eventually(done, what=f"{domain} events consumed")

    # -- looking inside -----------------------------------------------------------------------

    async def objects(self) -> list[str]:
        return [o.key for o in await self.rt.storage.list("")]

    async def published(self, type_name: str | None = None) -> list[dict[str, Any]]:
        async with self.svc.ctx.database().session() as session:
            stmt = select(outbox_table.c.type, outbox_table.c.body).order_by(outbox_table.c.seq)
            if type_name:
                stmt = stmt.where(outbox_table.c.type == type_name)
            rows = (await session.execute(stmt)).all()
        return [dict(json.loads(body)["data"], _type=t) for t, body in rows]

    async def snapshot(self) -> dict[str, Any]:
        """Rows, outbox size and stored objects: proves "nothing changed"."""
        out: dict[str, Any] = {}
        async with self.svc.ctx.database().session() as session:
            for table in ("media", "usage"):
                rows = (await session.execute(text(f"SELECT * FROM {table} ORDER BY 1"))).all()  # noqa: S608
                out[table] = [tuple(r) for r in rows]
            out["outbox"] = await session.scalar(select(func.count()).select_from(outbox_table))
        out["objects"] = await self.objects()
        return out

    async def sql(self, statement: str, **params: Any) -> None:
        async with self.svc.ctx.database().transaction() as session:
            await session.execute(text(statement), params)


async def start(quark: QuarkTestEnv, tmp_path: Path, **settings: Any) -> MediaHarness:
    settings.setdefault("storage_url", (tmp_path / "media-store").as_uri())
    settings.setdefault("processing_workers", 2)
    return MediaHarness(quark, await quark.start(module, **settings))


