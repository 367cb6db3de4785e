#!/bin/sh
# MinIO init job (docker-compose.yml, service minio-init; runs in the minio/mc image).
# Creates the media bucket and a MinIO user for the media service that may use only that bucket.
# Idempotent: safe to run again.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${QUARK_MEDIA_BUCKET:?}"
: "${QUARK_MEDIA_S3_ACCESS_KEY:?}" "${QUARK_MEDIA_S3_SECRET_KEY:?}"

# QUARK_MINIO_URL: only for running this script outside compose (tests/fleet/test_init_scripts.py).
mc alias set quark "${QUARK_MINIO_URL:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "quark/$QUARK_MEDIA_BUCKET"
mc anonymous set none "quark/$QUARK_MEDIA_BUCKET"

policy="${TMPDIR:-/tmp}/quark-media-policy.json"
sed "s/@BUCKET@/$QUARK_MEDIA_BUCKET/g" "$(dirname "$0")/media-policy.json" >"$policy"
mc admin policy create quark quark-media "$policy"
mc admin user add quark "$QUARK_MEDIA_S3_ACCESS_KEY" "$QUARK_MEDIA_S3_SECRET_KEY"
mc admin policy attach quark quark-media --user "$QUARK_MEDIA_S3_ACCESS_KEY" 2>/dev/null || true
echo "minio-init: bucket $QUARK_MEDIA_BUCKET and user $QUARK_MEDIA_S3_ACCESS_KEY ready"
