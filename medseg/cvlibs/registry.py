"""Named registries that map a config's `type:` string to a class or factory, and build it.

Importing this module is torch-free. A registry knows the package whose modules fill it (its
owner) and imports it on first lookup, so `MODELS.build(cfg.model)` works without anyone
importing `medseg.models` first and without the config layer importing the builders.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from medseg.utils.vocabulary import closest


def _where(obj: Any) -> str:
    """Return `module.qualname` (and file:line when known) of a registered object."""
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    try:
        return f"{name} ({inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]})"
    except (TypeError, OSError):
        return name


class Registry:
    """A name → class/factory table with a `register` decorator and a `build` method.

    >>> SHAPES = Registry("shapes")
    >>> @SHAPES.register
    ... class Box:
    ...     def __init__(self, size: int = 1):
    ...         self.size = size
    >>> SHAPES.build({"type": "Box", "size": 3}).size
    3
    >>> try:
    ...     SHAPES.build({"type": "Bx"})
    ... except ValueError as err:
    ...     print(err)
    at key 'type': unknown shapes type 'Bx'. Did you mean 'Box'? Registered: Box

    Args:
        name: What the registry holds, e.g. "models"; used in error messages.
        case_insensitive: Match names regardless of case (MedicalSeg writes `sgd`, `SGD`, ...).
        owner: The package whose import registers the entries, imported on first lookup.
    """

    def __init__(self, name: str, case_insensitive: bool = False, owner: str | None = None):
        self.name = name
        self.case_insensitive = case_insensitive
        self.owner = owner
        self._entries: dict[str, Any] = {}

    def _load_owner(self) -> None:
        """Import the owner package once; its modules register their classes."""
        if self.owner is not None:
            importlib.import_module(self.owner)
            self.owner = None

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
        self._load_owner()
        return isinstance(name, str) and self._key(name) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        """Sorted registered names."""
        self._load_owner()
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        """Return the entry for `name`; unknown names raise `KeyError` listing the choices."""
        self._load_owner()
        try:
            return self._entries[self._key(name)]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def build(
        self, node: Any, key: str | None = None, path: str | None = None, **extra: Any
    ) -> Any:
        """Build the object a `{type: Name, **kwargs}` node describes (nested nodes first).

        Args:
            node: The config node; a `ConfigNode` (what `Config` hands out) brings its own
                dotted key and sources for error messages.
            key: Dotted key of the node, when it is a plain dict.
            path: Config file of the node, when it is a plain dict.
            **extra: Keyword arguments from code, not from the file (e.g. an optimizer's
                parameters).

        Raises:
            ConfigError: Unknown type, unexpected or missing argument, or a constructor that
                rejects a value; the message names the dotted key and where it was set.
        """
        from medseg.cvlibs.builder import build

        return build(node, self, key, path, **extra)

    def unknown_message(self, name: str) -> str:
        """Text for an unknown `name`: the closest match and every registered name."""
        match = closest(name, self.names)
        hint = f" Did you mean '{match}'?" if match else ""
        return f"unknown {self.name} type '{name}'.{hint} Registered: {', '.join(self.names)}"

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self)} entries)"


MODELS = Registry("models", owner="medseg.models")
DATASETS = Registry("datasets", owner="medseg.datasets")
TRANSFORMS = Registry("transforms", owner="medseg.transforms")
LOSSES = Registry("losses", owner="medseg.models.losses")
OPTIMIZERS = Registry("optimizers", case_insensitive=True, owner="medseg.optim")
LR_SCHEDULERS = Registry("lr_schedulers", owner="medseg.optim")

ALL_REGISTRIES = (MODELS, DATASETS, TRANSFORMS, LOSSES, OPTIMIZERS, LR_SCHEDULERS)
