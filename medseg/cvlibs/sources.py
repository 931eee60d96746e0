"""Where each config value came from (a file of the `_base_` chain, `--opts` or a flag).

Errors name the source a user has to edit: the file that set the key last, or the `--opts`
entry (or train.py flag) that overrode it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sources:
    """Dotted key → origin, for error messages.

    Args:
        default: The config file itself (the answer when nothing more precise is known).
        files: Dotted key → the file of the `_base_` chain that set it last.
        overrides: Dotted key → the command-line override that set it (`--opts 'k=v'`).
    """

    default: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)

    def of(self, key: str | None) -> str | None:
        """The origin of `key`: an override of it, of a parent or of a child, else its file.

        >>> s = Sources("m.yml", files={"model": "base.yml"}, overrides={"iters": "--iters 5"})
        >>> s.of("model.num_classes"), s.of("iters"), s.of("loss")
        ('base.yml', '--iters 5', 'm.yml')
        """
        if not key:
            return self.default
        for dotted, entry in self.overrides.items():
            if dotted == key or dotted.startswith(f"{key}.") or key.startswith(f"{dotted}."):
                return entry
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            origin = self.files.get(".".join(parts[:n]))
            if origin:
                return origin
        return self.default


def record_keys(data: Any, origin: str, files: dict[str, str], prefix: str = "") -> None:
    """Note `origin` for every dotted key of `data` (nested mappings included)."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        files[dotted] = origin
        record_keys(value, origin, files, f"{dotted}.")


class ConfigNode(dict):
    """A copy of one config section that remembers its dotted key and its sources.

    `Registry.build` reads both, so a building error names the key and the file (or
    `--opts` entry) to fix.
    """

    def __init__(self, data: dict[str, Any], key: str, sources: Sources):
        super().__init__(data)
        self.key = key
        self.sources = sources

    def child(self, value: Any, key: str) -> Any:
        """`value` (an item of this node) as a `ConfigNode` at `key` when it is a mapping."""
        return ConfigNode(value, key, self.sources) if isinstance(value, dict) else value

    def where(self, key: str | None = None) -> str | None:
        """The origin of `key` (default: this node's key)."""
        return self.sources.of(key or self.key)
