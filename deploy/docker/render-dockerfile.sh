#!/usr/bin/env bash
# Write <module-dir>/Dockerfile from deploy/docker/Dockerfile.module, with the module's name and port
# taken from its module-manifest.yaml.   Usage: deploy/docker/render-dockerfile.sh services/blog [...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
template="$root/deploy/docker/Dockerfile.module"
[ "$#" -gt 0 ] || { echo "usage: $0 <module-dir>..." >&2; exit 2; }
for dir in "$@"; do
  dir="${dir%/}"
  manifest="$root/$dir/module-manifest.yaml"
  [ -f "$manifest" ] || { echo "$0: $manifest not found" >&2; exit 1; }
  name="$(sed -n 's/^name:[[:space:]]*\([a-z0-9-]*\).*/\1/p' "$manifest" | head -n 1)"
  port="$(sed -n 's/^port:[[:space:]]*\([0-9]*\).*/\1/p' "$manifest" | head -n 1)"
  if [ -z "$name" ] || [ -z "$port" ]; then echo "$0: no name/port in $manifest" >&2; exit 1; fi
  envname="$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')"
  sed -e "s|@MODULE@|$name|g" -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@ENVNAME@|$envname|g" \
    "$template" >"$root/$dir/Dockerfile"
  echo "wrote $dir/Dockerfile ($name, port $port)"
done
