"""Named registries that map a config's `type:` string to a class or factory.

Torch-free: registering and looking up names imports nothing heavy.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any


def _where(obj: Any) -> str:
    """Return `module.qualname` (and file:line when known) of a registered object."""
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    try:
        return f"{name} ({inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]})"
    except (TypeError, OSError):
        return name


class Registry:
    """A name → class/factory table with a `register` decorator.

    Args:
        name: What the registry holds, e.g. "models"; used in error messages.
        case_insensitive: Match names regardless of case (MedicalSeg writes `sgd`, `SGD`, ...).
    """

    def __init__(self, name: str, case_insensitive: bool = False):
        self.name = name
        self.case_insensitive = case_insensitive
        self._entries: dict[str, Any] = {}

    def _key(self, name: str) -> str:
        return name.lower() if self.case_insensitive else name

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """Register `obj` under `name` (default: its `__name__`).

        Usable as `@REG.register`, `@REG.register()`, `@REG.register(name="alias")` or
        `REG.register(obj, name="alias")`. Registering a taken name raises `KeyError` naming
        where the first entry lives.
        """

        def add(target: Any) -> Any:
            entry_name = name or target.__name__
            key = self._key(entry_name)
            if key in self._entries:
                raise KeyError(
                    f"'{entry_name}' is already registered in {self.name} by "
                    f"{_where(self._entries[key])}; pick another name"
                )
            self._entries[key] = target
            return target

        if obj is None:
            return add
        return add(obj)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        """Return the entry for `name`; unknown names raise `KeyError` listing the choices."""
        try:
            return self._entries[self._key(name)]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """Text for an unknown `name`: the closest match and every registered name."""
        by_lower = {n.lower(): n for n in self.names}
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.5)
        hint = f" Did you mean '{by_lower[close[0]]}'?" if close else ""
        return f"unknown {self.name} type '{name}'.{hint} Registered: {', '.join(self.names)}"

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self)} entries)"


MODELS = Registry("models")
DATASETS = Registry("datasets")
TRANSFORMS = Registry("transforms")
LOSSES = Registry("losses")
OPTIMIZERS = Registry("optimizers", case_insensitive=True)
LR_SCHEDULERS = Registry("lr_schedulers")

ALL_REGISTRIES = (MODELS, DATASETS, TRANSFORMS, LOSSES, OPTIMIZERS, LR_SCHEDULERS)
