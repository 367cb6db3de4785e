"""The process supervisor of `quark dev --fleet`: what compose's `restart: unless-stopped` does for containers.

Each child (a module process, Traefik) is restarted when it exits without being asked to: after an
exponential back-off (`initial`, doubling per crash within `window`, at most `max_delay`), and given up on
(state `failed`) after `max_crashes` crashes within `window` seconds, so a module that cannot start does
not spin. Every exit is reaped (`poll`), so no zombie keeps a PID "alive".

An operator (quark-manager.sh --local) steers a running fleet through files in `control_dir`:
`<name>.stop` holds a child down (it is stopped and not restarted) and `<name>.start` asks for it to run
again, which also clears a `failed` state. The supervisor removes a `.start` file once it has acted on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Child states, as shown by `quark-manager.sh --local status`, fleet.json and the hub's /hub page.
STARTING, RUNNING, BACKOFF, STOPPED, FAILED = "starting", "running", "backoff", "stopped", "failed"


@dataclass
class Policy:
    initial: float = 0.5
    max_delay: float = 30.0
    max_crashes: int = 5
    window: float = 60.0


@dataclass
class Child:
    name: str
    cmd: Sequence[str]
    env: dict[str, str]
    log_file: Path
    preexec: Callable[[], None] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    state: str = STOPPED
    restarts: int = 0
    crashes: deque[float] = field(default_factory=deque)
    next_start: float = 0.0
    last_exit: int | None = None
    started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def view(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit,
                "crashes_in_window": len(self.crashes),
                "next_start_in": round(max(0.0, self.next_start - time.monotonic()), 2)
                if self.state == BACKOFF else None}


class Supervisor:
    def __init__(self, children: Sequence[Child], *, policy: Policy | None = None,
                 control_dir: Path | None = None, on_change: Callable[[Child], None] | None = None) -> None:
        self.children = {c.name: c for c in children}
        self.policy = policy or Policy()
        self.control_dir = control_dir
        self.on_change = on_change
        self.stopping = False
        if control_dir is not None:
            control_dir.mkdir(parents=True, exist_ok=True)
            for stale in control_dir.glob("*.st*"):  # requests meant for a previous run
                stale.unlink(missing_ok=True)

    # -- one child -------------------------------------------------------------------------------

    def spawn(self, child: Child) -> None:
        with open(child.log_file, "ab") as out:
            child.proc = subprocess.Popen(list(child.cmd), env=child.env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, preexec_fn=child.preexec)
        child.started_at = time.monotonic()
        self._set(child, RUNNING)

    def _set(self, child: Child, state: str) -> None:
        changed = child.state != state
        child.state = state
        if changed and self.on_change is not None:
            self.on_change(child)

    def _held(self, child: Child) -> bool:
        return self.control_dir is not None and (self.control_dir / f"{child.name}.stop").exists()

    def stop_child(self, child: Child, timeout: float = 20) -> None:
        proc = child.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc is not None:
            child.last_exit = proc.returncode
        self._set(child, STOPPED)

    # -- the loop --------------------------------------------------------------------------------

    def start_all(self, names: Sequence[str] | None = None) -> None:
        for child in self.children.values():
            if (names is None or child.name in names) and not self._held(child):
                self.spawn(child)

    def poll(self) -> None:
        """One round: reap exits, schedule restarts, start what is due, act on operator requests."""
        now = time.monotonic()
        for child in self.children.values():
            self._control(child)
            proc = child.proc
            if child.state == RUNNING and proc is not None and proc.poll() is not None:
                child.last_exit = proc.returncode
                child.proc = None
                if self.stopping or self._held(child):
                    self._set(child, STOPPED)
                    continue
                self._crashed(child, now)
            if child.state == BACKOFF and now >= child.next_start and not self.stopping:
                print(f"quark: restarting {child.name} (restart {child.restarts + 1})", flush=True)
                child.restarts += 1
                self.spawn(child)

    def _crashed(self, child: Child, now: float) -> None:
        p = self.policy
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > p.window:
            child.crashes.popleft()
        n = len(child.crashes)
        if n >= p.max_crashes:
            print(f"quark: {child.name} exited with {child.last_exit}; {n} crashes within "
                  f"{p.window:.0f}s: giving up (quark-manager.sh --local start {child.name} retries)", flush=True)
            self._set(child, FAILED)
            return
        delay = min(p.initial * 2 ** (n - 1), p.max_delay)
        print(f"quark: {child.name} exited with {child.last_exit}; restarting in {delay:.1f}s", flush=True)
        child.next_start = now + delay
        self._set(child, BACKOFF)

    def _control(self, child: Child) -> None:
        if self.control_dir is None or self.stopping:
            return
        if self._held(child):
            if child.state == RUNNING:
                print(f"quark: stopping {child.name} (asked by the operator)", flush=True)
                self.stop_child(child)
            elif child.state in (BACKOFF, FAILED):
                self._set(child, STOPPED)
            return
        start = self.control_dir / f"{child.name}.start"
        if start.exists():
            start.unlink(missing_ok=True)
            if child.state != RUNNING:
                print(f"quark: starting {child.name} (asked by the operator)", flush=True)
                child.crashes.clear()
                self.spawn(child)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: child.view() for name, child in self.children.items()}

    def stop_all(self, order: Sequence[str] | None = None, timeout: float = 20) -> None:
        self.stopping = True
        names = list(order or reversed(list(self.children)))
        for name in names:
            proc = self.children[name].proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in names:
            self.stop_child(self.children[name], timeout)


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers (quark-manager.sh) never see a half-written file; only the owner reads it (the station's state
    carries each module's NATS URL, credentials included)."""
    import json

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data, indent=2))
    os.replace(tmp, path)
