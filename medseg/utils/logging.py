"""One logging set-up for every entry point: console plus a log file in the output folder."""

from __future__ import annotations

import errno
import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Send `medseg` logs to stderr and, when given, to `log_file` (appending).

    Calling it again replaces the handlers instead of stacking duplicates. When the log file's
    folder cannot be written (read-only, full), one line naming the folder and the errno is
    logged and the program exits with status 2.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_medseg", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    problem = None
    if log_file is not None:
        folder = os.path.dirname(os.path.abspath(log_file))
        try:
            os.makedirs(folder, exist_ok=True)
            handlers.append(logging.FileHandler(log_file))
        except OSError as err:
            problem = f"cannot write to the output folder {folder}: {describe_os_error(err)}"
    for handler in handlers:
        handler._medseg = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)
    if problem is not None:
        logging.getLogger(__name__).error("%s", problem)
        raise SystemExit(2)


def describe_os_error(err: OSError) -> str:
    """`[Errno 28] No space left on device (ENOSPC)`: the errno by number, text and name."""
    if err.errno is None:
        return str(err)
    name = errno.errorcode.get(err.errno, "?")
    return f"[Errno {err.errno}] {os.strerror(err.errno)} ({name})"
