"""The `quark` command as a person uses it: real processes, real servers, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from quark_sdk.cli import main
from quark_sdk.embedded import free_port
from quark_sdk.testing import wait_until

HERE = Path(__file__).parent


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (stray servers would)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if str(path) in cmdline and "zombie" not in state:
            found.append(cmdline)
    return found


class DevProcess:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = data_dir.parent / f"dev-{port}.log"
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        cmd = [sys.executable, "-m", "quark_sdk.cli", "dev", "--port", str(port), "--data-dir", str(data_dir),
               "--modules", "", "--with", "sample.module:module"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_up(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(self.url + "/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=timeout, interval=0.1, what="quark dev ready")

    def output(self) -> str:
        return self.log.read_text()


def wait_for_effect(client: httpx.Client, event_id: str, timeout: float = 20) -> None:
    wait_until(lambda: client.get("/api/v1/sample/effects").json().get(event_id) == 1, timeout=timeout,
               what=f"event {event_id} applied")


@pytest.mark.slow
def test_quark_dev_serves_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dev = DevProcess(data, free_port())
    dev.wait_up()
    with httpx.Client(base_url=dev.url, timeout=5) as client:
        assert client.get("/health").json()["modules"] == {"sample": "ok"}
        assert client.get("/health/sample").json()["checks"]["database"] == "ok"
        assert client.get("/nope").headers["content-type"] == "application/problem+json"
        assert "quark_http_requests_total" in client.get("/metrics").text
        event_id = client.post("/api/v1/sample/notes", params={"text": "kept"}).json()["event_id"]
        wait_for_effect(client, event_id)
    out = dev.output()
    assert f"Quark is up at {dev.url}" in out and str(data) in out

    dev.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert dev.proc.wait(60) == 0, dev.output()
    assert processes_using(data) == []

    again = DevProcess(data, free_port())
    again.wait_up()
    with httpx.Client(base_url=again.url, timeout=5) as client:
        assert client.get("/api/v1/sample/effects").json() == {event_id: 1}
    # Even a SIGKILLed `quark dev` leaves no server behind: they die with their parent.
    again.proc.kill()
    again.proc.wait(10)
    wait_until(lambda: processes_using(data) == [], timeout=30, interval=0.1, what="no server left running")


def test_invalid_setting_fails_with_one_line_naming_it(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARK_SAMPLE_DB_POOL_SIZE", "lots")
    assert main(["serve", "sample.module:module"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("quark: invalid setting QUARK_SAMPLE_DB_POOL_SIZE")
    monkeypatch.setenv("QUARK_SAMPLE_DB_POOL_SIZE", "5")
    monkeypatch.setenv("QUARK_NATS_URL", "http://wrong")
    assert main(["serve", "sample.module:module"]) == 2
    assert "QUARK_SAMPLE_NATS_URL (or QUARK_NATS_URL)" in capsys.readouterr().err


def test_modules_lists_and_unknown_module_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modules", "--json"]) == 0
    capsys.readouterr()
    assert main(["serve", "no-such-module"]) == 2
    assert "unknown module(s): no-such-module" in capsys.readouterr().err


async def test_serving_processes_freeze_the_startup_heap() -> None:
    """`quark serve` / `quark dev` wrap their app in FreezeHeapAfterStartup: once startup completes,
    the start-up objects leave the collector's generations and collections become rarer."""
    import asyncio
    import gc

    from quark_sdk.app import FreezeHeapAfterStartup

    events: list[str] = []

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                events.append(f"startup, frozen={gc.get_freeze_count() > 0}")
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    inbox: asyncio.Queue[dict] = asyncio.Queue()
    for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
        inbox.put_nowait(message)

    async def send(message: dict) -> None:
        events.append(f"{message['type']}, frozen={gc.get_freeze_count() > 0}")

    thresholds = gc.get_threshold()
    gc.unfreeze()
    try:
        await FreezeHeapAfterStartup(app)({"type": "lifespan"}, inbox.get, send)  # type: ignore[arg-type]
        assert events == [
            "startup, frozen=False",
            "lifespan.startup.complete, frozen=True",
            "lifespan.shutdown.complete, frozen=True",
        ]
        assert gc.get_threshold()[0] > thresholds[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
