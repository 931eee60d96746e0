"""Ctrl-C and SIGTERM during training: noted at once, acted on at the end of the iteration.

Python runs a signal handler only when the main thread is back in the interpreter, so during a
minute-long CPU step a SIGTERM would be acknowledged a minute late and the run looks hung. The
C-level handler also writes the signal number to a wakeup socket (`signal.set_wakeup_fd`); a
small thread blocked on that socket logs the signal the moment it arrives.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MESSAGE = "%s: finishing this iteration, then saving a checkpoint"


class StopRequest:
    """Which stop signal arrived, if any (`signal` is its name, e.g. "SIGTERM")."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


def _watch(sock: socket.socket, request: StopRequest) -> None:
    """Log every stop signal number written to `sock` until it is closed."""
    while True:
        try:
            data = sock.recv(16)
        except OSError:
            return
        if not data:
            return
        for number in data:
            if number in STOP_SIGNALS:
                logger.warning(MESSAGE, signal.Signals(number).name)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM for the block; yields the `StopRequest` they set.

    A second Ctrl-C raises KeyboardInterrupt (stop at once). The previous handlers and wakeup
    fd are restored on exit. Off the main thread (where handlers cannot be set) nothing is caught.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # e.g. an embedding interpreter that forbids it
        previous_fd = None
    watcher = threading.Thread(target=_watch, args=(reader, request), daemon=True)
    if previous_fd is not None:
        watcher.start()

    def handler(signum: int, frame: Any) -> None:
        if request and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.signal = signal.Signals(signum).name
        if previous_fd is None:
            logger.warning(MESSAGE, request.signal)

    handlers = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        if previous_fd is not None:
            signal.set_wakeup_fd(previous_fd)
        writer.close()
        if watcher.is_alive():
            watcher.join(timeout=5)
        reader.close()
