"""A hub-only station (`quark dev --modules hub`, embedded or `--fleet`) and the `quark` CLI run against it,
as a third-party developer runs them; the test modules are importable through PYTHONPATH."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from quark_sdk.embedded import free_port, parent_death_signal
from quark_sdk.testing import wait_until

HERE = Path(__file__).resolve().parent
QUARK = Path(sys.executable).with_name("quark")

ENV = {
    "QUARK_ENV": "dev",
    "QUARK_LOG_LEVEL": "WARNING",
    "QUARK_HUB_LEASE_TTL": "3",  # a heartbeat a second: drains and re-docks show within a second
    "QUARK_HUB_MONITOR_INTERVAL": "1",
    "QUARK_HEARTBEAT_INTERVAL": "1",
    "PYTHONPATH": str(HERE),
}


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("QUARK_")}
    out.update(ENV)
    return out


class Station:
    def __init__(self, mode: str, data_dir: Path) -> None:
        self.mode, self.data_dir, self.port = mode, data_dir, free_port()
        self.log = data_dir / "station.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240) -> Station:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(QUARK), "dev", "--modules", "hub", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.mode == "fleet":
            cmd += ["--fleet", "--free-ports"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.data_dir, env=env(), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=parent_death_signal(signal.SIGINT))
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"station exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            return (self.data_dir / "station.json").exists()

        wait_until(up, timeout=timeout, interval=0.2, what=f"station ({self.mode}) up")
        return self

    def quark(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(QUARK), *args, "--data-dir", str(self.data_dir)], env=env(), cwd=self.data_dir,
                             capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0, f"quark {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        return res

    def stop(self) -> None:
        """Stop the station; the modules `quark install` docked beside it must end with it (else: fail, after
        stopping them, so no process outlives the test)."""
        from quark_sdk.lifecycle_cli import DOCKED_DIR, stop_docked

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        alive = [f.name for f in (self.data_dir / DOCKED_DIR).glob("*.json") if _alive(f)]
        stop_docked(self.data_dir, "*", grace=5)
        assert not alive, f"docked modules outlived the station: {alive}"


def _alive(pidfile: Path) -> bool:
    import json

    try:
        os.kill(int(json.loads(pidfile.read_text())["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return False
    return True


@dataclass
class Load:
    """Constant load on one URL from a thread (about 40 requests a second: under the gateway's rate limit)."""

    url: str
    results: list[tuple[int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    resp = client.get(self.url)
                    if resp.status_code != 200:
                        self.failures.append(f"{resp.status_code} {resp.text[:100]}")
                    else:
                        self.results.append((resp.status_code, resp.json()["version"]))
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.failures.append(repr(exc))
                self._stop.wait(0.025)  # the load's pace; returns at once when the load is stopped

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
