"""Turn `{type: Name, ...}` config nodes into objects through the registries, recursively.

`Registry.build` is the way in; this module holds the recursion and the argument checks.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

from medseg.cvlibs.errors import ConfigError
from medseg.cvlibs.registry import ALL_REGISTRIES, Registry
from medseg.cvlibs.sources import ConfigNode, Sources
from medseg.utils.vocabulary import closest


def build(
    node: Any, registry: Registry, key: str | None = None, path: str | None = None, **extra: Any
) -> Any:
    """Build the object a `{type: Name, **kwargs}` node describes.

    Nested nodes (dict values and list items holding a `type`) are built first, looked up in
    `registry` and then in every other registry. `extra` keyword arguments come from code, not
    from the file (the optimizer's parameters, the scheduler's optimizer). The node is never
    modified.

    Args:
        node: The config node.
        registry: Where `type` is looked up first.
        key: Dotted key of the node, for error messages (a `ConfigNode` brings its own).
        path: Config file, for error messages (a `ConfigNode` knows each key's source).
        **extra: Keyword arguments passed to the constructor in addition to the node's.

    Raises:
        ConfigError: Unknown type, unexpected or missing argument, or a constructor that rejects
            a value; the message names the file and the dotted key.
    """
    if isinstance(node, ConfigNode):
        key = key or node.key
        sources = node.sources
    else:
        sources = Sources(path)
    return _build(node, registry, key, sources, extra)


def _build(
    node: Any, registry: Registry, key: str | None, sources: Sources, extra: dict[str, Any]
) -> Any:
    if not isinstance(node, dict) or "type" not in node:
        raise ConfigError(
            f"expected a mapping with a 'type' key, got {type(node).__name__}: {node!r}",
            sources.of(key),
            key,
        )
    kwargs = dict(copy.deepcopy(node))
    type_name = kwargs.pop("type")
    factory = _lookup(type_name, registry, _join(key, "type"), sources)
    kwargs = {k: _build_nested(v, registry, _join(key, k), sources) for k, v in kwargs.items()}
    _check_arguments(factory, type_name, kwargs, extra, key, sources)
    try:
        return factory(**extra, **kwargs)
    except (TypeError, ValueError, FileNotFoundError) as err:
        raise ConfigError(f"{type_name}: {err}", path=sources.of(key), key=key) from err


def _join(key: str | None, part: str) -> str:
    return f"{key}.{part}" if key else part


def _lookup(type_name: Any, registry: Registry, key: str, sources: Sources) -> Any:
    path = sources.of(key)
    if not isinstance(type_name, str):
        raise ConfigError(f"'type' must be a string, got {type_name!r}", path, key)
    if type_name in registry:
        return registry.get(type_name)
    for other in ALL_REGISTRIES:
        if type_name in other:
            return other.get(type_name)
    # Suggest from the registry that has a close name (a transform inside a dataset node).
    suggesting = [registry, *(r for r in ALL_REGISTRIES if r is not registry)]
    closest_in = next((r for r in suggesting if closest(type_name, r.names)), registry)
    raise ConfigError(closest_in.unknown_message(type_name), path=path, key=key)


def _build_nested(value: Any, registry: Registry, key: str, sources: Sources) -> Any:
    if isinstance(value, dict) and "type" in value:
        return _build(value, registry, key, sources, {})
    if isinstance(value, list):
        return [_build_nested(v, registry, f"{key}.{i}", sources) for i, v in enumerate(value)]
    return value


def _check_arguments(
    factory: Any,
    type_name: str,
    kwargs: dict[str, Any],
    extra: dict[str, Any],
    key: str | None,
    sources: Sources,
) -> None:
    """Name an argument the constructor does not take, or a required one that is missing."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        name
        for name, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in extra
    ]
    for name in kwargs:
        if name not in accepted:
            raise ConfigError(
                f"{type_name} takes no argument '{name}'; it accepts: {', '.join(accepted)}",
                path=sources.of(_join(key, name)),
                key=_join(key, name),
            )
    missing = [
        name
        for name in accepted
        if params[name].default is inspect.Parameter.empty
        and name not in kwargs
        and params[name].kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    if missing:
        raise ConfigError(
            f"{type_name} needs argument(s) {', '.join(missing)}", path=sources.of(key), key=key
        )
