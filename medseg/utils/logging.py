"""One logging set-up for every entry point: console plus a log file in the output folder."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Send `medseg` logs to stderr and, when given, to `log_file` (appending).

    Calling it again replaces the handlers instead of stacking duplicates.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_medseg", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler._medseg = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)
