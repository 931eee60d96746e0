"""The split list files of a prepared dataset (`train_list.txt`, ...): their one reader and writer.

A line names one case: `images/<case>.npy labels/<case>.npy` (MedicalSeg's format; a test list
may give the image alone). A path that plain whitespace-separated fields cannot carry (one with
a space, a tab, a quote, a backslash or a control character) is written as a JSON string,
`"images/my case.npy"`, so any legal file name survives; lists without quotes read exactly as
MedicalSeg reads them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from medseg.utils.atomic import write_text_atomic

_DECODER = json.JSONDecoder()


def _field(path: str) -> str:
    plain = path and path[0] != '"' and all(c.isprintable() and not c.isspace() for c in path)
    return path if plain and "\\" not in path else json.dumps(path, ensure_ascii=False)


def format_line(paths: Sequence[str]) -> str:
    """One list line (without the newline) holding `paths`."""
    return " ".join(_field(p) for p in paths)


def parse_line(line: str, where: str) -> list[str]:
    """The paths on one list line; `where` (file:line) names it in errors."""
    fields, at = [], 0
    while True:
        while at < len(line) and line[at].isspace():
            at += 1
        if at == len(line):
            return fields
        if line[at] == '"':
            try:
                value, at = _DECODER.raw_decode(line, at)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: unterminated or bad quoted path ({err.msg})") from None
            if not isinstance(value, str):
                raise ValueError(f"{where}: a quoted field must be a path")
            fields.append(value)
        else:
            end = at
            while end < len(line) and not line[end].isspace():
                end += 1
            fields.append(line[at:end])
            at = end


def case_paths(case: str) -> tuple[str, str]:
    """The image and label paths of a prepared case, relative to the dataset folder."""
    return f"images/{case}.npy", f"labels/{case}.npy"


def write_list(path: str | os.PathLike, cases: Sequence[str]) -> None:
    """Write the list of prepared `cases` (ids) atomically."""
    write_text_atomic(path, "".join(format_line(case_paths(c)) + "\n" for c in cases))


def read_list(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """`(line number, paths)` for each non-blank line of a list file."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        fields = parse_line(line, f"{path}:{number}")
        if fields:
            entries.append((number, fields))
    return entries
