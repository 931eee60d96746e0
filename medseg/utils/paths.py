"""Keep outputs out of the inputs: a run must never write among the files it reads."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def output_inside_inputs(
    output_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike], flag: str
) -> str | None:
    """Why `output_dir` may not be used, or None: it is an input folder or lies inside one.

    Args:
        output_dir: The folder a run writes to.
        inputs: The folders it reads (and the files it reads, whose folders count).
        flag: The option that named `output_dir`, for the message.
    """
    target = Path(output_dir).resolve()
    for item in inputs:
        folder = Path(item).resolve()
        folder = folder if folder.is_dir() else folder.parent
        if target == folder or folder in target.parents:
            return (
                f"{flag} {output_dir} lies in the input folder {folder}; outputs are never "
                "written among the inputs (a rerun would read them as cases): choose a folder "
                "outside it"
            )
    return None
