"""Stop signals during training are logged the moment they arrive, not after the step."""

import hashlib
import logging
import os
import signal
import threading

import pytest

from medseg.engine.stop_signals import stop_signals


def busy_in_c() -> None:
    """Keep the main thread inside one C call (no Python handler can run meanwhile)."""
    hashlib.pbkdf2_hmac("sha256", b"medseg", b"salt", 3_000_000)


def test_sigterm_is_logged_by_the_watcher_while_the_main_thread_is_busy(caplog):
    caplog.set_level(logging.WARNING, logger="medseg.engine.stop_signals")
    with stop_signals() as request:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
        busy_in_c()
        logged_during_the_call = [r for r in caplog.records if "SIGTERM" in r.getMessage()]
    assert request.signal == "SIGTERM"
    assert logged_during_the_call, "the signal was not logged"
    # Logged by the watcher thread: the main thread was inside the C call at the time.
    assert logged_during_the_call[0].threadName != threading.main_thread().name


def test_second_ctrl_c_stops_at_once_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), stop_signals() as request:
        os.kill(os.getpid(), signal.SIGINT)
        assert request.signal == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
