"""The upload is streamed: the service never holds the whole file in memory while receiving it."""

import io
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

from media_testkit import API, start
from PIL import Image

from quark_sdk.testing import QuarkTestEnv

CHUNK = 64 * 1024


def big_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((2000, 1500), 60).convert("RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()


async def test_a_large_upload_is_never_held_whole_in_memory(quark: QuarkTestEnv, tmp_path: Path) -> None:
    h = await start(quark, tmp_path)
    alice = h.account()
    data = big_jpeg()
    assert len(data) > 2_000_000
    boundary = "quarkboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        view = memoryview(data)
        for i in range(0, len(data), CHUNK):
            yield bytes(view[i : i + CHUNK])
        yield tail

    await h.ready(alice)  # warm-up: first-use imports and caches are not the upload's memory
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        resp = await h.client.post(
            API, content=body(), headers={**alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == len(data)
    # Everything allocated in this process while the request ran (client, ASGI, parser, storage, checks):
    # a fraction of the file, not the file.
    assert peak < len(data) / 4, f"peak {peak} bytes for a {len(data)}-byte upload"
    await h.settled(resp.json()["id"], alice)
