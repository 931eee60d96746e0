"""Error types that carry the file and dotted key a user has to fix."""

from __future__ import annotations


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
