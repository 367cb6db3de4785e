"""The supervisor of `quark dev --fleet` (quark_sdk.supervisor) with real child processes: a crashing child is
restarted after a doubling back-off, given up on after N crashes within the window, every exit is reaped,
and the operator's control files hold a child down and start it again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from quark_sdk.supervisor import BACKOFF, FAILED, RUNNING, STOPPED, Child, Policy, Supervisor
from quark_sdk.testing import wait_until

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
SERVE = [sys.executable, "-c", "import signal; signal.pause()"]  # serves until a signal ends it


def test_a_crashing_child_backs_off_doubling_then_is_given_up(tmp_path: Path) -> None:
    child = Child("crashy", CRASH, {}, tmp_path / "crashy.log")
    sup = Supervisor([child], policy=Policy(initial=0.1, max_delay=10, max_crashes=4, window=60),
                     control_dir=tmp_path / "control")
    sup.start_all()
    delays: list[float] = []

    def poll_until(state: str) -> None:
        def reached() -> bool:
            sup.poll()
            return child.state == state

        wait_until(reached, timeout=30, interval=0.01, what=f"state {state}")

    for _ in range(3):
        poll_until(BACKOFF)
        delays.append(child.next_start - time.monotonic())
        assert child.last_exit == 3 and child.proc is None  # reaped: no zombie left behind
        poll_until(RUNNING)
    poll_until(FAILED)
    assert child.restarts == 3 and len(child.crashes) == 4
    # 0.1, 0.2, 0.4 s (each measured a moment after it was set, so a little less)
    assert [round(d, 1) for d in delays] == [0.1, 0.2, 0.4], delays
    sup.poll()
    assert child.state == FAILED and child.proc is None  # given up: not started again

    # The operator asks for it again: it runs (and crashes) afresh, with a fresh crash count.
    (tmp_path / "control" / "crashy.start").touch()
    sup.poll()
    assert not (tmp_path / "control" / "crashy.start").exists()
    assert child.restarts == 3 and len(child.crashes) == 0
    poll_until(BACKOFF)
    sup.stop_all()


def test_control_files_hold_a_child_down_and_start_it_again(tmp_path: Path) -> None:
    child = Child("svc", SERVE, {}, tmp_path / "svc.log")
    control = tmp_path / "control"
    sup = Supervisor([child], policy=Policy(initial=0.05), control_dir=control)
    sup.start_all()
    first = child.pid
    assert first and child.state == RUNNING
    try:
        (control / "svc.stop").touch()
        sup.poll()
        assert child.state == STOPPED and child.pid is None
        for _ in range(5):  # held down: not restarted however often the loop runs
            sup.poll()
        assert child.state == STOPPED and child.restarts == 0
        (control / "svc.stop").unlink()
        (control / "svc.start").touch()
        sup.poll()
        assert child.state == RUNNING and child.pid not in (None, first)
        assert sup.snapshot()["svc"]["state"] == RUNNING
    finally:
        sup.stop_all()
    assert child.state == STOPPED and child.pid is None
