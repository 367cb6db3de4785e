#!/usr/bin/env bash
# quark-manager.sh — run the Quark station day to day: the Docker fleet, or (--local) the same fleet
# without Docker (`quark dev --fleet`: one process per module, embedded PostgreSQL/Valkey/NATS).
#
#   ./quark-manager.sh start                  everything, in dependency order
#   ./quark-manager.sh restart blog media     a selection
#   ./quark-manager.sh --local start          no Docker: quark dev --fleet in the background, with a pid file
#   ./quark-manager.sh help                   all commands and options
#
# Every operation is appended to logs/quark-manager.log. docs/operations.md has the full guide.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROG="quark-manager.sh"

# The modules are the manifests of the tree (plugin-hub/ and services/*/module-manifest.yaml), in docking order
# (quark_sdk.cli.START_ORDER first, then the others by name): a module made by `quark create` is known at once.
# Each module with a database has a one-shot `<module>-migrate` job.
START_ORDER=(hub auth user media blog messaging ai mailer moderation web)
# Pure bash (no sed/grep: the script must run, and explain itself, on a bare PATH).
manifest_name() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ "$line" =~ ^name:[[:space:]]*([a-z0-9-]+) ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}"
      return 0
    fi
  done <"$1"
}
manifest_has_database() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    [[ "$line" =~ ^(requires:.*|[[:space:]]+)database:[[:space:]]*true ]] && return 0
  done <"$1"
  return 1
}
MODULES=()
DB_MODULES=()
discover_modules() {
  local found=() f name
  for f in "$ROOT/plugin-hub/module-manifest.yaml" "$ROOT"/services/*/module-manifest.yaml; do
    [ -f "$f" ] || continue
    name="$(manifest_name "$f")"
    [ -n "$name" ] || continue
    found+=("$name")
    if manifest_has_database "$f"; then DB_MODULES+=("$name"); fi
  done
  for name in "${START_ORDER[@]}"; do
    contains "$name" "${found[@]+"${found[@]}"}" && MODULES+=("$name")
  done
  for name in "${found[@]+"${found[@]}"}"; do # services/* globs in name order
    contains "$name" "${START_ORDER[@]}" || MODULES+=("$name")
  done
  return 0
}
INFRA=(postgres redis nats minio vault otel-collector tempo loki prometheus grafana traefik mailpit)
JOBS=(minio-init vault-init)
OPTIONAL=(ollama)

LOG_FILE="${QUARK_MANAGER_LOG:-$ROOT/logs/quark-manager.log}"
DATA_DIR="${QUARK_DATA_DIR:-$ROOT/.quark}"
START_TIMEOUT="${QUARK_START_TIMEOUT:-180}"
STOP_TIMEOUT="${QUARK_STOP_TIMEOUT:-60}"
COMPOSE_FILES="${QUARK_COMPOSE_FILES:-docker-compose.yml}"

LOCAL=0
FREE_PORTS=0
FOLLOW=0
LINES=100
ASSUME_YES=0
COLOR=1
COMMAND=""
SELECTION=()

# --------------------------------------------------------------------------- output

setup_colors() {
  if [ "$COLOR" -eq 1 ] && [ -t 1 ] && [ -z "${NO_COLOR:-}" ] && [ "${TERM:-}" != "dumb" ]; then
    C_RED=$'\033[31m' C_GREEN=$'\033[32m' C_YELLOW=$'\033[33m' C_BLUE=$'\033[34m' C_BOLD=$'\033[1m'
    C_RESET=$'\033[0m'
  else
    C_RED="" C_GREEN="" C_YELLOW="" C_BLUE="" C_BOLD="" C_RESET=""
  fi
}

info() { printf '%s==>%s %s\n' "$C_BLUE" "$C_RESET" "$*"; }
ok() { printf '%s ok %s %s\n' "$C_GREEN" "$C_RESET" "$*"; }
warn() { printf '%swarn%s %s\n' "$C_YELLOW" "$C_RESET" "$*" >&2; }
bad() { printf '%sFAIL%s %s\n' "$C_RED" "$C_RESET" "$*"; }

log_line() {
  local dir
  dir="$(dirname "$LOG_FILE")"
  mkdir -p "$dir" 2>/dev/null || return 0
  # logs/ holds run-time output only: keep it out of git without touching the repository's .gitignore.
  [ "$dir" != "$ROOT/logs" ] || [ -e "$dir/.gitignore" ] || printf '*\n' >"$dir/.gitignore" 2>/dev/null || true
  printf '%s pid=%s user=%s mode=%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "${USER:-?}" \
    "$([ "$LOCAL" -eq 1 ] && echo local || echo docker)" "$*" >>"$LOG_FILE" 2>/dev/null || true
}

die() {
  printf '%serror:%s %s\n' "$C_RED" "$C_RESET" "$1" >&2
  log_line "error: $1"
  exit "${2:-1}"
}

usage() {
  cat <<EOF
${C_BOLD}$PROG${C_RESET} — start, stop and watch the Quark station

Usage: $PROG [--local] <command> [service...] [options]

Commands:
  start   [svc...]  start everything, or a selection (dependencies first), and wait until healthy
  stop    [svc...]  stop everything, or a selection (dependents first)
  restart [svc...]  stop, then start
  status  [svc...]  what runs (exit 3 when the fleet is not running)
  logs    [svc...]  recent log lines (-n N, -f to follow)
  health  [svc...]  readiness of every module (/health/ready) and container health (exit 1 if any fails)
  rebuild [svc...]  Docker: rebuild the images and recreate the containers; --local: reinstall (make install)
  clean             stop and delete all data: Docker volumes, or with --local the data directory (asks first)
  help              this text

Options:
  --local           no Docker: drive \`quark dev --fleet\` (embedded PostgreSQL, Valkey and NATS)
  --free-ports      --local: pick free ports instead of the manifests' ports
  --profile NAME    Docker: enable a compose profile (e.g. ai for Ollama); repeatable
  -n, --lines N     logs: how many lines (default $LINES)
  -f, --follow      logs: keep following
  -y, --yes         clean: do not ask
  --no-color        plain output (also when NO_COLOR is set or output is not a terminal)

Services:
  modules           ${MODULES[*]}
  infrastructure    ${INFRA[*]} ${OPTIONAL[*]} (Docker only)

Environment:
  QUARK_DATA_DIR (--local data, default .quark)   QUARK_START_TIMEOUT (s, default $START_TIMEOUT)
  QUARK_STOP_TIMEOUT (s, default $STOP_TIMEOUT)      QUARK_COMPOSE_FILES (default docker-compose.yml)
  QUARK_MANAGER_LOG (default logs/quark-manager.log)
EOF
}

# --------------------------------------------------------------------------- arguments

parse_args() {
  local profiles=()
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --local) LOCAL=1 ;;
      --free-ports) FREE_PORTS=1 ;;
      --profile)
        [ "$#" -ge 2 ] || die "--profile needs a name" 2
        profiles+=("$2")
        shift
        ;;
      --profile=*) profiles+=("${1#--profile=}") ;;
      -n | --lines)
        [ "$#" -ge 2 ] || die "$1 needs a number" 2
        LINES="$2"
        shift
        ;;
      --lines=*) LINES="${1#--lines=}" ;;
      -f | --follow) FOLLOW=1 ;;
      -y | --yes) ASSUME_YES=1 ;;
      --no-color) COLOR=0 ;;
      -h | --help) COMMAND="help" ;;
      -*) die "unknown option $1 (see $PROG help)" 2 ;;
      *)
        if [ -z "$COMMAND" ]; then COMMAND="$1"; else SELECTION+=("$1"); fi
        ;;
    esac
    shift
  done
  case "$LINES" in '' | *[!0-9]*) die "--lines needs a number, got '$LINES'" 2 ;; esac
  if [ "${#profiles[@]}" -gt 0 ]; then
    COMPOSE_PROFILES="$(
      IFS=,
      echo "${profiles[*]}"
    )"
    export COMPOSE_PROFILES
  fi
}

contains() {
  local needle="$1" item
  shift
  for item in "$@"; do [ "$item" = "$needle" ] && return 0; done
  return 1
}

# Check the selection against the known services and put it in dependency order.
order_selection() {
  local known=("${MODULES[@]}")
  if [ "$LOCAL" -eq 0 ]; then known=("${INFRA[@]}" "${OPTIONAL[@]}" "${JOBS[@]}" "${MODULES[@]}"); fi
  local svc
  for svc in "${SELECTION[@]+"${SELECTION[@]}"}"; do
    if ! contains "$svc" "${known[@]}"; then
      if [ "$LOCAL" -eq 1 ] && contains "$svc" "${INFRA[@]}" "${OPTIONAL[@]}"; then
        die "'$svc' is infrastructure: with --local, quark dev runs PostgreSQL, Valkey and NATS itself; select modules (${MODULES[*]})" 2
      fi
      die "unknown service '$svc' (known: ${known[*]})" 2
    fi
  done
  local ordered=()
  for svc in "${known[@]}"; do
    if contains "$svc" "${SELECTION[@]+"${SELECTION[@]}"}"; then ordered+=("$svc"); fi
  done
  SELECTION=("${ordered[@]+"${ordered[@]}"}")
}

reversed_selection() {
  local i
  for ((i = ${#SELECTION[@]} - 1; i >= 0; i--)); do printf '%s\n' "${SELECTION[$i]}"; done
}

# --------------------------------------------------------------------------- Docker mode

compose() {
  local args=() f
  for f in $COMPOSE_FILES; do args+=(-f "$ROOT/$f"); done
  docker compose --project-directory "$ROOT" "${args[@]}" "$@"
}

require_docker() {
  command -v docker >/dev/null 2>&1 ||
    die "Docker is not installed (or not on PATH). Install Docker with the Compose plugin, or run without Docker: $PROG --local $COMMAND" 127
  docker compose version >/dev/null 2>&1 ||
    die "the Docker Compose v2 plugin is missing ('docker compose version' failed); install docker-compose-plugin" 127
  docker info >/dev/null 2>&1 ||
    die "the Docker engine is not reachable (is the daemon running, and may $(id -un) use it?); or run without Docker: $PROG --local $COMMAND" 1
  if [ ! -f "$ROOT/.env" ]; then
    warn "no .env: using the dev-only passwords of .env.example (cp .env.example .env and change them)"
  fi
  if [ -z "${QUARK_HUB_REGISTRATION_TOKEN:-}" ] && ! env_file_sets QUARK_HUB_REGISTRATION_TOKEN; then
    die "QUARK_HUB_REGISTRATION_TOKEN is not set: put it in $ROOT/.env (the hub refuses to start in prod without it), e.g. QUARK_HUB_REGISTRATION_TOKEN=\$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" 2
  fi
}

# True if $ROOT/.env gives the variable a non-empty value (as docker compose reads it).
env_file_sets() {
  [ -f "$ROOT/.env" ] && grep -Eq "^[[:space:]]*$1[[:space:]]*=[[:space:]]*[^[:space:]#]" "$ROOT/.env"
}

# Infrastructure without a container health check (their images have no shell or wget): readiness URL,
# fetched from the otel-collector container, whose busybox has wget.
ready_url() {
  case "$1" in
    tempo) echo "http://tempo:3200/ready" ;;
    loki) echo "http://loki:3100/ready" ;;
    *) echo "" ;;
  esac
}

docker_start() {
  local sel=("${SELECTION[@]+"${SELECTION[@]}"}")
  # Vault's dev server keeps everything in memory: whenever it starts, its init job must run again.
  if [ "${#sel[@]}" -gt 0 ] && contains vault "${sel[@]}"; then sel+=(vault-init); fi
  info "starting ${sel[*]:-the whole fleet} (waiting until healthy, up to ${START_TIMEOUT}s)"
  compose up -d --wait --wait-timeout "$START_TIMEOUT" "${sel[@]+"${sel[@]}"}"
  ok "started ${sel[*]:-the whole fleet}"
}

docker_stop() {
  if [ "${#SELECTION[@]}" -eq 0 ]; then
    info "stopping the whole fleet"
    compose stop --timeout 20
  else
    local svc
    while IFS= read -r svc; do
      info "stopping $svc"
      compose stop --timeout 20 "$svc"
    done < <(reversed_selection)
  fi
  ok "stopped ${SELECTION[*]:-the whole fleet}"
}

docker_status() {
  compose ps --all --format 'table {{.Service}}\t{{.State}}\t{{.Health}}\t{{.Status}}' \
    "${SELECTION[@]+"${SELECTION[@]}"}"
}

docker_logs() {
  local args=(--tail "$LINES")
  [ "$FOLLOW" -eq 1 ] && args+=(--follow)
  compose logs "${args[@]}" "${SELECTION[@]+"${SELECTION[@]}"}"
}

docker_health() {
  local targets=("${SELECTION[@]+"${SELECTION[@]}"}") failed=0 svc cid state ready
  [ "${#targets[@]}" -gt 0 ] || targets=("${INFRA[@]}" "${MODULES[@]}")
  for svc in "${targets[@]}"; do
    contains "$svc" "${JOBS[@]}" && continue
    cid="$(compose ps -q "$svc" 2>/dev/null | head -n 1)"
    if [ -z "$cid" ]; then
      bad "$(printf '%-15s' "$svc") not running"
      failed=1
      continue
    fi
    state="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$cid")"
    if contains "$svc" "${MODULES[@]}"; then
      ready="$(compose exec -T "$svc" python -c "$READY_PROBE" 2>&1 || true)"
    elif [ -n "$(ready_url "$svc")" ] && [ "$state" = "running" ]; then
      if compose exec -T otel-collector wget -q -O /dev/null "$(ready_url "$svc")" >/dev/null 2>&1; then
        state="healthy" ready="ready (GET $(ready_url "$svc") from otel-collector)"
      else
        ready="not ready: GET $(ready_url "$svc") from otel-collector failed"
      fi
    else
      ready=""
    fi
    if [ "$state" = "healthy" ] && { [ -z "$ready" ] || [[ "$ready" == ready* ]]; }; then
      ok "$(printf '%-15s' "$svc") $state${ready:+  $ready}"
    else
      bad "$(printf '%-15s' "$svc") $state${ready:+  $ready}"
      failed=1
    fi
  done
  return "$failed"
}

# Run inside a module container: GET /health/ready on its own port.
# shellcheck disable=SC2016
READY_PROBE='
import json, os, urllib.error, urllib.request
port = next((v for k, v in os.environ.items() if k.endswith("_INSTANCE_URL")), "http://127.0.0.1:0").rsplit(":", 1)[1]
try:
    body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5))
    print("ready", " ".join(f"{k}={v}" for k, v in body.get("checks", {}).items()))
except urllib.error.HTTPError as exc:
    print("not ready", exc.read().decode(errors="replace")[:200])
except OSError as exc:
    print("unreachable", exc)
'

docker_rebuild() {
  info "rebuilding ${SELECTION[*]:-all images}"
  compose build --pull "${SELECTION[@]+"${SELECTION[@]}"}"
  compose up -d --wait --wait-timeout "$START_TIMEOUT" --force-recreate "${SELECTION[@]+"${SELECTION[@]}"}"
  ok "rebuilt and restarted ${SELECTION[*]:-the whole fleet}"
}

docker_clean() {
  confirm "delete every container and volume of the fleet (databases, objects, metrics, logs)?"
  compose down --volumes --remove-orphans
  ok "fleet removed, volumes deleted"
}

# --------------------------------------------------------------------------- local mode (no Docker)

PID_FILE="$DATA_DIR/run/fleet.pid"
FLEET_JSON="$DATA_DIR/fleet.json"
FLEET_LOG="$DATA_DIR/logs/fleet.log"

find_quark() {
  QUARK_BIN="${QUARK_BIN:-}"
  if [ -z "$QUARK_BIN" ]; then
    if [ -x "$ROOT/.venv/bin/quark" ]; then QUARK_BIN="$ROOT/.venv/bin/quark"; else QUARK_BIN="$(command -v quark || true)"; fi
  fi
  if [ -z "$QUARK_BIN" ] || [ ! -x "$QUARK_BIN" ]; then
    die "the quark command was not found (looked in $ROOT/.venv/bin and PATH); run: make install" 127
  fi
  PYTHON="${QUARK_PYTHON:-$(dirname "$QUARK_BIN")/python}"
  [ -x "$PYTHON" ] || PYTHON="$(command -v python3 || true)"
  [ -n "$PYTHON" ] || die "no python interpreter found next to $QUARK_BIN or on PATH" 127
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

supervisor_pid() {
  local pid=""
  [ -f "$PID_FILE" ] && pid="$(head -n 1 "$PID_FILE" 2>/dev/null || true)"
  case "$pid" in '' | *[!0-9]*) return 1 ;; esac
  alive "$pid" || return 1
  printf '%s\n' "$pid"
}

# "name pid url state restarts" for every module of the running fleet (from quark dev's fleet.json; the
# state is the supervisor's: running, backoff, stopped, failed).
fleet_modules() {
  [ -f "$FLEET_JSON" ] || return 0
  "$PYTHON" - "$FLEET_JSON" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
sup = state.get("supervisor", {})
for name, url in state.get("modules", {}).items():
    info = sup.get(name, {})
    print(name, state.get("pids", {}).get(name) or "-", url, info.get("state", "running"), info.get("restarts", 0))
PY
}

CONTROL_DIR="$DATA_DIR/run/control"
OPTIONS_FILE="$DATA_DIR/run/fleet.options"

# Wait until the supervisor reports the module in state $2 (fleet.json), or fail after $3 seconds.
wait_module_state() {
  local name="$1" want="$2" deadline=$((SECONDS + $3)) state
  while :; do
    state="$(fleet_modules | awk -v n="$name" '$1 == n {print $4}')"
    [ "$state" = "$want" ] && return 0
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# Start modules of the running fleet again (they were stopped, or the supervisor gave up on them).
local_start_modules() {
  local pid="$1" name url missing=() known
  known="$(fleet_modules | awk '{print $1}')"
  for name in "${SELECTION[@]}"; do
    printf '%s\n' "$known" | grep -qx "$name" || missing+=("$name")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    die "the local fleet (pid $pid) was started without ${missing[*]}; stop it and start it with them: $PROG --local stop && $PROG --local start $(printf '%s' "$known" | tr '\n' ' ')${missing[*]}" 1
  fi
  mkdir -p "$CONTROL_DIR"
  for name in "${SELECTION[@]}"; do
    rm -f "$CONTROL_DIR/$name.stop"
    if [ "$(fleet_modules | awk -v n="$name" '$1 == n {print $4}')" = "running" ]; then
      ok "$name is already running"
      continue
    fi
    info "starting $name"
    : >"$CONTROL_DIR/$name.start"
    wait_module_state "$name" running "$START_TIMEOUT" || die "$name did not start within ${START_TIMEOUT}s; see $PROG --local logs $name" 1
    url="$(fleet_modules | awk -v n="$name" '$1 == n {print $3}')"
    local deadline=$((SECONDS + START_TIMEOUT))
    until "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' "$url" 2>/dev/null; do
      wait_module_state "$name" running 0 || die "$name exited during start-up; see $PROG --local logs $name" 1
      [ "$SECONDS" -ge "$deadline" ] && die "$name is not answering $url/health within ${START_TIMEOUT}s" 1
      sleep 0.2
    done
    ok "started $name ($url)"
  done
}

module_selected() {
  [ "${#SELECTION[@]}" -eq 0 ] || contains "$1" "${SELECTION[@]}"
}

local_start() {
  local pid
  if pid="$(supervisor_pid)"; then
    if [ "${#SELECTION[@]}" -gt 0 ]; then
      local_start_modules "$pid"
      return 0
    fi
    ok "the local fleet is already running (pid $pid)"
    return 0
  fi
  mkdir -p "$(dirname "$PID_FILE")" "$(dirname "$FLEET_LOG")"
  rm -f "$FLEET_JSON" "$PID_FILE"
  local args=(dev --fleet --data-dir "$DATA_DIR")
  if [ "${#SELECTION[@]}" -gt 0 ]; then
    args+=(--modules "$(
      IFS=,
      echo "${SELECTION[*]}"
    )")
  fi
  [ "$FREE_PORTS" -eq 1 ] && args+=(--free-ports)
  printf 'FREE_PORTS=%s\nSELECTION=%s\n' "$FREE_PORTS" "${SELECTION[*]}" >"$OPTIONS_FILE"
  info "starting ${SELECTION[*]:-every installed module} without Docker (quark ${args[*]})"
  printf '\n=== %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "quark ${args[*]}" >>"$FLEET_LOG"
  # Its own session, so a Ctrl-C in this terminal or closing it leaves the fleet running; the embedded
  # servers and module processes die with it (quark dev arranges that).
  if command -v setsid >/dev/null 2>&1; then
    setsid "$QUARK_BIN" "${args[@]}" </dev/null >>"$FLEET_LOG" 2>&1 &
  else
    nohup "$QUARK_BIN" "${args[@]}" </dev/null >>"$FLEET_LOG" 2>&1 &
  fi
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  until [ -s "$FLEET_JSON" ]; do
    if ! alive "$pid"; then
      rm -f "$PID_FILE"
      tail -n 20 "$FLEET_LOG" >&2 || true
      die "the local fleet exited during start-up; full log: $FLEET_LOG" 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      die "the local fleet was not up within ${START_TIMEOUT}s (stopping it); log: $FLEET_LOG" 1
    fi
    sleep 0.2
  done
  ok "local fleet up (pid $pid, data in $DATA_DIR)"
  local_status || true
}

wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while alive "$pid"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

local_stop() {
  local pid
  if ! pid="$(supervisor_pid)"; then
    rm -f "$PID_FILE" "$FLEET_JSON"
    ok "the local fleet is not running"
    return 0
  fi
  if [ "${#SELECTION[@]}" -gt 0 ]; then
    # Held down through the supervisor, which would otherwise restart a module it sees exit.
    local name
    mkdir -p "$CONTROL_DIR"
    for name in $(reversed_selection); do
      rm -f "$CONTROL_DIR/$name.start"
      : >"$CONTROL_DIR/$name.stop"
      info "stopping $name"
      wait_module_state "$name" stopped "$STOP_TIMEOUT" || die "$name did not stop within ${STOP_TIMEOUT}s" 1
      ok "stopped $name"
    done
    return 0
  fi
  info "stopping the local fleet (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    warn "the fleet did not stop within ${STOP_TIMEOUT}s; killing its process group"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "could not stop pid $pid" 1
  fi
  # Only our own run's files: a start that raced with this stop has written its own by now.
  if [ "$(head -n 1 "$PID_FILE" 2>/dev/null || true)" = "$pid" ]; then rm -f "$PID_FILE" "$FLEET_JSON"; fi
  ok "local fleet stopped (data kept in $DATA_DIR)"
}

local_status() {
  local pid
  if ! pid="$(supervisor_pid)"; then
    printf '%s\n' "local fleet: not running (data dir $DATA_DIR)"
    return 3
  fi
  printf '%slocal fleet: running%s (pid %s, data dir %s)\n' "$C_BOLD" "$C_RESET" "$pid" "$DATA_DIR"
  if [ ! -s "$FLEET_JSON" ]; then
    printf '%s\n' "  starting up…"
    return 0
  fi
  local name mpid url state restarts down=0 colour gateway
  gateway="$("$PYTHON" -c 'import json, sys; g = json.load(open(sys.argv[1])).get("gateway") or {}; print(g.get("url", ""), g.get("dashboard", ""))' "$FLEET_JSON" 2>/dev/null || true)"
  if [ -n "${gateway// /}" ]; then
    printf '  gateway    %s (Traefik; dashboard %s)\n' "${gateway%% *}" "${gateway#* }"
  fi
  printf '  %-10s %-8s %-8s %-9s %s\n' MODULE STATE PID RESTARTS URL
  while read -r name mpid url state restarts; do
    module_selected "$name" || continue
    if [ "$state" = "running" ] && alive "$mpid"; then
      colour="$C_GREEN"
    else
      [ "$state" = "running" ] && state="exited"
      colour="$C_RED"
      down=1
    fi
    printf '  %-10s %s%-8s%s %-8s %-9s %s\n' "$name" "$colour" "$state" "$C_RESET" "$mpid" "$restarts" "$url"
  done < <(fleet_modules)
  return "$down"
}

local_health() {
  if ! supervisor_pid >/dev/null; then
    printf '%s\n' "local fleet: not running"
    return 3
  fi
  local failed=0 name state detail
  while read -r name state detail; do
    if [ "$state" = "ready" ]; then
      ok "$(printf '%-10s' "$name") ready  $detail"
    else
      bad "$(printf '%-10s' "$name") $state  $detail"
      failed=1
    fi
  done < <("$PYTHON" - "$FLEET_JSON" "${SELECTION[@]+"${SELECTION[@]}"}" <<'PY'
import json, sys, urllib.error, urllib.request
state = json.load(open(sys.argv[1]))
wanted = set(sys.argv[2:])
for name, url in state.get("modules", {}).items():
    if wanted and name not in wanted:
        continue
    try:
        body = json.load(urllib.request.urlopen(url + "/health/ready", timeout=5))
        print(name, "ready", url, " ".join(f"{k}={v}" for k, v in body.get("checks", {}).items()))
    except urllib.error.HTTPError as exc:
        try:
            checks = json.loads(exc.read()).get("checks", {})
        except ValueError:
            checks = {}
        print(name, "not-ready", url, " ".join(f"{k}={v}" for k, v in checks.items()).replace("\n", " "))
    except OSError as exc:
        print(name, "unreachable", url, str(exc).replace("\n", " "))
PY
  )
  return "$failed"
}

local_logs() {
  local files=() name
  if [ "${#SELECTION[@]}" -eq 0 ]; then
    files+=("$FLEET_LOG")
    for name in "${MODULES[@]}"; do
      [ -f "$DATA_DIR/logs/$name.log" ] && files+=("$DATA_DIR/logs/$name.log")
    done
  else
    for name in "${SELECTION[@]}"; do files+=("$DATA_DIR/logs/$name.log"); done
  fi
  local existing=() f
  for f in "${files[@]}"; do [ -f "$f" ] && existing+=("$f"); done
  [ "${#existing[@]}" -gt 0 ] || die "no logs yet in $DATA_DIR/logs" 1
  if [ "$FOLLOW" -eq 1 ]; then
    tail -n "$LINES" -F "${existing[@]}"
  else
    tail -n "$LINES" "${existing[@]}"
  fi
}

local_rebuild() {
  command -v make >/dev/null 2>&1 || die "make is not installed" 127
  info "reinstalling the SDK and modules into .venv (make install)"
  rm -f "$ROOT/.venv/.installed"
  make -C "$ROOT" install
  if supervisor_pid >/dev/null; then
    local_stop
    local_start
  fi
  ok "rebuilt"
}

local_clean() {
  case "$DATA_DIR" in
    "" | "/" | "$HOME" | "$ROOT") die "refusing to delete data directory '$DATA_DIR'" 2 ;;
  esac
  confirm "stop the local fleet and delete $DATA_DIR (databases, streams, secrets, logs)?"
  SELECTION=()
  local_stop
  rm -rf "$DATA_DIR"
  ok "deleted $DATA_DIR"
}

confirm() {
  [ "$ASSUME_YES" -eq 1 ] && return 0
  if [ ! -t 0 ]; then die "$1 — not a terminal: pass --yes to confirm" 2; fi
  local answer
  read -r -p "$1 [y/N] " answer
  case "$answer" in y | Y | yes | YES) return 0 ;; *) die "cancelled" 1 ;; esac
}

# --------------------------------------------------------------------------- main

main() {
  parse_args "$@"
  setup_colors
  discover_modules
  local m
  for m in "${MODULES[@]+"${MODULES[@]}"}"; do
    if contains "$m" "${DB_MODULES[@]+"${DB_MODULES[@]}"}"; then JOBS+=("$m-migrate"); fi
  done
  JOBS+=(ollama-pull)
  [ -n "$COMMAND" ] || COMMAND="help"
  case "$COMMAND" in
    help)
      usage
      return 0
      ;;
    start | stop | restart | status | logs | health | rebuild | clean) ;;
    *)
      usage >&2
      die "unknown command '$COMMAND'" 2
      ;;
  esac
  order_selection
  if [ "$COMMAND" = "clean" ] && [ "${#SELECTION[@]}" -gt 0 ]; then
    die "clean takes no services: it removes the whole fleet's data" 2
  fi
  log_line "begin $COMMAND ${SELECTION[*]:-all}"
  local rc=0 prefix
  if [ "$LOCAL" -eq 1 ]; then
    find_quark
    prefix=local
  else
    require_docker
    prefix=docker
  fi
  case "$COMMAND" in
    restart)
      # A whole-fleet restart keeps what the fleet was started with: --free-ports and its modules.
      if [ "$LOCAL" -eq 1 ] && [ "${#SELECTION[@]}" -eq 0 ] && [ -f "$OPTIONS_FILE" ]; then
        grep -qx 'FREE_PORTS=1' "$OPTIONS_FILE" && FREE_PORTS=1
        local remembered
        remembered="$(sed -n 's/^SELECTION=//p' "$OPTIONS_FILE")"
        if [ -n "$remembered" ]; then
          # The whole fleet stops; it starts again with the modules it had.
          local_stop && read -r -a SELECTION <<<"$remembered" && local_start || rc=$?
          log_line "end $COMMAND all (modules: $remembered) exit=$rc"
          return "$rc"
        fi
      fi
      "${prefix}_stop" && "${prefix}_start" || rc=$?
      ;;
    *)
      "${prefix}_${COMMAND}" || rc=$?
      ;;
  esac
  log_line "end $COMMAND ${SELECTION[*]:-all} exit=$rc"
  return "$rc"
}

main "$@"
