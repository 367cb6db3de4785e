"""The fleet's storage path: the S3 driver against a real S3-compatible HTTP server (moto, server mode).

Variants are served by redirecting to presigned URLs (or streamed with `delivery=stream`), refused
uploads leave neither objects nor pending multipart uploads in the bucket, and deletion empties it.
"""

import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
from media_testkit import API, assert_problem, has_gps, jpeg, start

from quark_sdk.testing import QuarkTestEnv

ACCESS, SECRET, REGION = "quark-media-test", "quark-media-secret", "us-east-1"


def s3_url(endpoint: str, bucket: str) -> str:
    return f"s3://{ACCESS}:{SECRET}@{endpoint}/{bucket}?secure=false&region={REGION}"


def bucket_state(endpoint: str, bucket: str) -> tuple[list[str], list[Any]]:
    """Ask the server directly (boto3), so the check does not trust the driver under test."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{endpoint}",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return sorted(keys), list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


async def test_s3_upload_process_presigned_delivery_and_delete(
    quark: QuarkTestEnv, tmp_path: Path, s3_endpoint: str
) -> None:
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    h = await start(quark, tmp_path, storage_url=s3_url(s3_endpoint, bucket))
    alice = h.account()
    media = await h.ready(alice, jpeg(1600, 1200))
    keys, pending = bucket_state(s3_endpoint, bucket)
    assert keys == sorted(f"{alice.id}/{media['id']}/{n}.webp" for n in ("thumb", "medium", "original"))
    assert pending == []

    url = media["variants"]["original"]["url"]
    redirect = await h.fetch(url)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith(f"http://{s3_endpoint}/{bucket}/") and "X-Amz-Signature" in location
    assert redirect.headers["cache-control"].startswith("private")
    async with httpx.AsyncClient() as direct:
        blob = await direct.get(location)
    assert blob.status_code == 200 and blob.content[:4] == b"RIFF" and not has_gps(blob.content)
    assert (await h.fetch(url, headers={"If-None-Match": redirect.headers["etag"]})).status_code == 304

    assert (await h.client.delete(f"{API}/{media['id']}", headers=alice.headers)).status_code == 204
    assert bucket_state(s3_endpoint, bucket) == ([], [])


async def test_s3_streaming_delivery_and_refusals_leave_nothing(
    quark: QuarkTestEnv, tmp_path: Path, s3_endpoint: str
) -> None:
    bucket = f"media-{uuid.uuid4().hex[:12]}"
    h = await start(
        quark, tmp_path, storage_url=s3_url(s3_endpoint, bucket), delivery="stream", max_upload_bytes=256 * 1024
    )
    alice = h.account()
    media = await h.ready(alice)
    streamed = await h.fetch(media["variants"]["thumb"]["url"])
    assert streamed.status_code == 200 and streamed.headers["content-type"] == "image/webp"
    assert streamed.headers["etag"].strip('"')
    keys_before = bucket_state(s3_endpoint, bucket)

    assert_problem(await h.upload(alice, b"<?php echo 1; ?>", filename="x.jpg"), 422)
    assert_problem(await h.upload(alice, jpeg(64, 64) + b"<script>alert(1)</script>"), 422)
    assert_problem(await h.upload(alice, jpeg(64, 64)[:-200]), 422)
    assert_problem(await h.upload(alice, jpeg(2500, 2500, quality=100)), 413)
    assert bucket_state(s3_endpoint, bucket) == keys_before


async def test_storage_down_means_503_and_nothing_recorded(quark: QuarkTestEnv, tmp_path: Path) -> None:
    """Nothing listens on the storage port: the service still starts, and uploads are 503, not 500."""
    from quark_sdk.embedded import free_port

    h = await start(quark, tmp_path, storage_url=s3_url(f"127.0.0.1:{free_port()}", "nowhere"))
    alice = h.account()
    resp = await h.upload(alice, jpeg(64, 64))
    assert_problem(resp, 503)
    assert "retry-after" in resp.headers
    assert (await h.client.get(API, headers=alice.headers)).json()["items"] == []
    assert (await h.client.get("/health")).status_code == 200
