"""Error types that carry the file and dotted key a user has to fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names the file and the dotted key."""

    def __init__(self, message: str, path: str | None = None, key: str | None = None):
        where = []
        if path:
            where.append(f"in {path}")
        if key:
            where.append(f"at key '{key}'")
        prefix = f"{' '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.path = path
        self.key = key


def checked(parse: Callable[[Any], T], value: Any, path: str | None, key: str) -> T:
    """`parse(value)`, its `ValueError` turned into a `ConfigError` naming `path` and `key`.

    >>> from medseg.utils.vocabulary import positive_int
    >>> checked(positive_int, "two", "c.yml", "batch_size")
    Traceback (most recent call last):
    ...
    medseg.cvlibs.errors.ConfigError: in c.yml at key 'batch_size': expected a positive integer, ...
    """
    try:
        return parse(value)
    except ValueError as err:
        raise ConfigError(str(err), path, key) from None
