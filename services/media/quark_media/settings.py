from pydantic import Field
from pydantic_settings import SettingsConfigDict

from quark_sdk.config import ServiceSettings

WEBP_MAX_DIMENSION = 16_383


class MediaSettings(ServiceSettings):
    """Settings of the media service; every field reads `QUARK_MEDIA_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="QUARK_MEDIA_", extra="ignore")

    port: int = Field(default=3003, ge=1, le=65535)

    # Where objects live: file:///abs/path (local driver) or s3://KEY:SECRET@host:port/bucket?secure=false.
    # Unset: a local directory `<data_dir>/media` (the embedded topology).
    storage_url: str | None = None
    # How variants are delivered: "auto" redirects to a presigned URL when the driver makes one (S3) and
    # streams otherwise; "stream" always streams through this service (S3 endpoint not reachable by clients).
    delivery: str = Field(default="auto", pattern=r"^(auto|stream)$")
    presign_ttl: int = Field(default=3600, ge=60, le=7 * 86_400)
    # Prefix for variant URLs in responses and events; empty gives paths (`/api/v1/media/...`).
    public_base_url: str = Field(default="", max_length=500, pattern=r"^(https?://[^\s]+[^/\s])?$")

    # Uploads.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    max_pixels: int = Field(default=40_000_000, ge=10_000, le=500_000_000)  # decompression-bomb guard
    # The "original" variant is WebP, whose format holds at most 16383 px per side: a larger image would be
    # accepted and then fail in processing, so the limit cannot be set past it (issue 16.11).
    max_dimension: int = Field(default=WEBP_MAX_DIMENSION, ge=64, le=WEBP_MAX_DIMENSION)

    # Uploads per user per window (sliding, in Redis); 0 disables.
    upload_rate_limit: int = Field(default=120, ge=0, le=1_000_000)
    upload_rate_window: float = Field(default=3600.0, gt=0, le=86_400)

    # Per-user quotas (0 = unlimited).
    quota_max_count: int = Field(default=1000, ge=0, le=10_000_000)
    quota_max_bytes: int = Field(default=500 * 1024 * 1024, ge=0, le=1 << 50)

    # Variants.
    thumb_size: int = Field(default=320, ge=16, le=4096)
    medium_size: int = Field(default=1280, ge=64, le=8192)
    webp_quality: int = Field(default=80, ge=1, le=100)
    webp_method: int = Field(default=4, ge=0, le=6)

    # Processing: in worker processes (default; no GIL contention with requests) or threads, how many
    # (0 = CPU count), attempts before `failed`, when a stuck job is retried.
    processing_mode: str = Field(default="process", pattern=r"^(process|thread)$")
    processing_workers: int = Field(default=0, ge=0, le=64)
    processing_attempts: int = Field(default=3, ge=1, le=20)
    processing_timeout: float = Field(default=300.0, gt=0, le=86_400)
    recovery_interval: float = Field(default=30.0, gt=0, le=86_400)

    # Orphans: media never attached (post, avatar or the attach endpoint) within `orphan_ttl` seconds
    # are deleted by a job that runs every `orphan_sweep_interval` seconds (orphan_ttl 0 disables it).
    orphan_ttl: int = Field(default=86_400, ge=0, le=365 * 86_400)
    orphan_sweep_interval: float = Field(default=600.0, gt=0, le=86_400)

