"""Graceful stop on SIGINT/SIGTERM: the handler only records the signal; the loop finishes its step."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Callable signal handler; ``signum`` is the first signal received (0 for none).

    A second signal raises KeyboardInterrupt at once (press Ctrl-C twice to abort).
    """

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Install a StopRequest for SIGINT and SIGTERM (main thread only), restoring the old handlers."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.signal(signum, request) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
