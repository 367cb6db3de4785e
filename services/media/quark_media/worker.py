"""What runs inside a processing worker before its first job: priority, parent watch, codec warm-up.

Kept free of the service's imports on purpose. A spawned worker imports the module that holds its
initializer; when that was `quark_media.runtime` it pulled in FastAPI, SQLAlchemy, the SDK and hvac
(~1.3 s of CPU per worker, measured with `py-spy` and `python -c "import quark_media.runtime"`),
and since the pool spawned its second worker only when two jobs first overlapped, that import ran at
the very moment uploads started arriving concurrently, beside the first worker's image work.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

WORKER_NICENESS = 2
"""Slightly below the API, not far below: at nice 10 the workers got ~10% of a core whenever the service, its
database and the clients were busy, so two workers used a fraction of two cores (bench/media.py, 0.34x Pillow's
throughput). Responsiveness comes from SCHED_BATCH instead: a batch task never preempts a waking request handler."""


def lower_priority() -> None:
    """Image work yields to request handling on wake-up but still gets (almost) a full share of the cores."""
    with contextlib.suppress(OSError, AttributeError):
        # On Linux a thread id set here lowers only this worker thread (or process).
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def init_worker_process() -> None:
    """Worker process: low priority, codecs loaded, and exit when the service process is gone (even SIGKILLed)."""
    lower_priority()
    warm_codecs()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="quark-media-parent-watch", daemon=True).start()


def warm_codecs() -> None:
    """Import the image code and Pillow's format plugins now rather than inside the first upload's job."""
    from PIL import Image

    import quark_media.imaging  # noqa: F401  (the jobs' functions live there)

    Image.init()


def ready() -> int:
    """A no-op job: its answer means a worker has started and run its initializer."""
    return os.getpid()
